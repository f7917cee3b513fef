"""chat_vector on bad inputs: a clear error naming the tensor/field and file, and never a partial output."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from chat_vector_helpers import load_model, make_trio, write_model
from params_helpers import section_params
from safetensors.torch import save_file

from koblla.chat_vector import apply_chat_vector
from koblla.errors import InputError


def no_output(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp dir left behind"


@pytest.fixture
def trio(tmp_path):
    return make_trio(tmp_path, torch.bfloat16, shards=3)


def run(trio, out, **kw):
    kor, base, inst = trio
    return apply_chat_vector(kw.pop("korean", kor), kw.pop("base", base), kw.pop("instruct", inst), out,
                             section_params("chat_vector", **kw))


def test_missing_shard(tmp_path, trio):
    shard = trio[1] / "model-00002-of-00003.safetensors"
    shard.unlink()
    with pytest.raises(InputError, match="model-00002-of-00003.safetensors") as e:
        run(trio, tmp_path / "out")
    assert "base model" in str(e.value)
    no_output(tmp_path, tmp_path / "out")


def test_missing_key(tmp_path, trio):
    sd = load_model(trio[2])
    del sd["model.layers.1.mlp.down_proj.weight"]
    inst = write_model(tmp_path / "inst2", sd, eos=128009, instruct=True)
    with pytest.raises(InputError, match=r"model\.layers\.1\.mlp\.down_proj\.weight") as e:
        run(trio, tmp_path / "out", instruct=inst)
    assert "korean" in str(e.value) and "safetensors" in str(e.value) and str(inst) in str(e.value)
    no_output(tmp_path, tmp_path / "out")


def test_index_names_key_absent_from_shard(tmp_path, trio):
    index = trio[0] / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00003.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"model\.layers\.9\.mlp\.up_proj\.weight.*korean|korean.*layers\.9"):
        run(trio, tmp_path / "out")
    no_output(tmp_path, tmp_path / "out")


def test_shape_mismatch(tmp_path, trio):
    sd = load_model(trio[1])
    sd["model.layers.0.self_attn.o_proj.weight"] = torch.zeros(16, 8, dtype=torch.bfloat16)
    base = write_model(tmp_path / "base2", sd)
    with pytest.raises(InputError, match=r"o_proj\.weight.*\[16, 8\]") as e:
        run(trio, tmp_path / "out", base=base)
    assert "base2" in str(e.value) and "instruct" in str(e.value)
    no_output(tmp_path, tmp_path / "out")


def test_dtype_mismatch(tmp_path, trio):
    sd = load_model(trio[2])
    sd["model.norm.weight"] = sd["model.norm.weight"].float()
    inst = write_model(tmp_path / "inst2", sd, eos=128009, instruct=True)
    with pytest.raises(InputError, match=r"model\.norm\.weight.*float32|model\.norm\.weight.*dtype") as e:
        run(trio, tmp_path / "out", instruct=inst)
    assert "inst2" in str(e.value)
    no_output(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_inf_named_by_tensor_and_file(tmp_path, trio, bad):
    sd = load_model(trio[1])
    sd["lm_head.weight"][100000, 3] = bad  # late in the last tensor: the output is mostly written by then
    base = write_model(tmp_path / "base2", sd, shards=2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("previous good output")
    with pytest.raises(InputError, match=r"lm_head\.weight.*base model.*NaN/Inf") as e:
        run(trio, tmp_path / "out", base=base)
    assert "base2" in str(e.value) and str(100000 * 16 + 3) in str(e.value)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]  # the old output is left as it was
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_config_mismatch_names_field(tmp_path, trio):
    cfg = json.loads((trio[2] / "config.json").read_text())
    cfg["rope_theta"] = 10000.0
    (trio[2] / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="rope_theta"):
        run(trio, tmp_path / "out")
    no_output(tmp_path, tmp_path / "out")


def test_special_token_outside_vocab(tmp_path, trio):
    with pytest.raises(InputError, match="special_token_ids"):
        run(trio, tmp_path / "out", special_token_ids=[200000])
    no_output(tmp_path, tmp_path / "out")


def test_corrupt_safetensors(tmp_path, trio):
    (trio[0] / "model-00001-of-00003.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(InputError, match="model-00001-of-00003.safetensors.*korean"):
        run(trio, tmp_path / "out")


def test_truncated_shard(tmp_path, trio):
    """A shard cut short (an interrupted download) is refused before any block is mapped (no SIGBUS mid-merge)."""
    shard = trio[2] / "model-00003-of-00003.safetensors"
    os.truncate(shard, shard.stat().st_size - 1000)
    with pytest.raises(InputError, match="model-00003-of-00003.safetensors.*instruct"):
        run(trio, tmp_path / "out")
    no_output(tmp_path, tmp_path / "out")


class _WritesAFile:
    """Unpickling this calls open(marker, "w"): code execution that creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pth_only_checkpoint_is_refused_unread(tmp_path, trio):
    """A Meta consolidated.00.pth is not an input: refused by name, and its pickle is never opened."""
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil_base"
    (evil / "original").mkdir(parents=True)
    pth = evil / "original" / "consolidated.00.pth"
    torch.save({"tok_embeddings.weight": torch.zeros(2, 2), "payload": _WritesAFile(marker)}, pth)
    (evil / "config.json").write_text((trio[1] / "config.json").read_text())
    with pytest.raises(InputError, match=r"evil_base: no model weights \(base model\).*safetensors"):
        run(trio, tmp_path / "out", base=evil)
    assert not marker.exists(), "the pickle's code ran"
    no_output(tmp_path, tmp_path / "out")
    # The payload is real: an unsafe load does write the file.
    torch.load(pth, weights_only=False)
    assert marker.exists()


def test_missing_input_dir(tmp_path, trio):
    with pytest.raises(InputError, match="nowhere.*instruct|instruct.*nowhere"):
        run(trio, tmp_path / "out", instruct=tmp_path / "nowhere")


def test_unsupported_dtype(tmp_path, trio):
    sd = {n: t.to(torch.int8) for n, t in load_model(trio[0]).items()}
    d = tmp_path / "kor_int8"
    d.mkdir()
    save_file(sd, d / "model.safetensors")
    (d / "config.json").write_text((trio[0] / "config.json").read_text())
    with pytest.raises(InputError, match="I8"):
        run(trio, tmp_path / "out", korean=d)
