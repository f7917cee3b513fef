"""chat_vector: exact results on tiny random checkpoints (bf16, fp16, fp32), options, output layout, CLI."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from chat_vector_helpers import SPECIAL, bits, load_model, make_trio, reference, write_model
from params_helpers import params_with, section_params, section_values

from koblla.chat_vector import apply_chat_vector
from koblla.chat_vector import merge as merge_mod
from koblla.chat_vector.params import ChatVectorParams
from koblla.dtypes import SHORT_TO_LONG, torch_dtype
from koblla.errors import InputError

DTYPES = {name: torch_dtype(name) for name in SHORT_TO_LONG}


def assert_bitwise(out: dict, ref: dict) -> None:
    assert out.keys() == ref.keys()
    for n in ref:
        assert out[n].dtype == ref[n].dtype, n
        diff = int((bits(out[n]) != bits(ref[n])).sum())
        assert diff == 0, f"{n}: {diff} elements differ from the float64 reference"


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("ratio", [1.0, 0.7])
def test_bitwise_equal_to_float64_reference(tmp_path, dtype, ratio):
    kor, base, inst = make_trio(tmp_path, DTYPES[dtype], shards=3)
    params = section_params("chat_vector", ratio=ratio, special_token_ids=SPECIAL, shard_size_mb=1)
    m = apply_chat_vector(kor, base, inst, tmp_path / "out", params)
    out = load_model(tmp_path / "out")
    ref = reference(load_model(kor), load_model(base), load_model(inst), params.ratio_for, DTYPES[dtype])
    assert_bitwise(out, ref)
    assert m["shards"] > 1 and len(list((tmp_path / "out").glob("model-*-of-*.safetensors"))) == m["shards"]
    assert m["special_token_rows"] == 2 * len(SPECIAL)


def test_many_small_chunks_and_rows_across_chunk_edges(tmp_path, monkeypatch):
    monkeypatch.setattr(merge_mod, "CHUNK_ELEMENTS", 40)  # 16-wide rows: 2 rows a block, special ids on edges
    kor, base, inst = make_trio(tmp_path, torch.bfloat16, shards=2)
    params = section_params("chat_vector", ratio=0.3, special_token_ids=[0, 1, 128006, 128255])
    apply_chat_vector(kor, base, inst, tmp_path / "out", params)
    ref = reference(load_model(kor), load_model(base), load_model(inst), params.ratio_for, torch.bfloat16,
                    special=[0, 1, 128006, 128255])
    assert_bitwise(load_model(tmp_path / "out"), ref)


def test_overrides_first_match_wins_and_special_rows(tmp_path):
    kor, base, inst = make_trio(tmp_path, torch.bfloat16, shards=0)  # single model.safetensors in
    overrides = {"embed_tokens|lm_head": 0.0, "norm": 0.0, r"layers\.0\.": 0.5, "layers": 2.0}
    params = section_params("chat_vector", ratio=1.0, overrides=overrides, special_token_ids=SPECIAL)
    assert params.ratio_for("model.layers.0.input_layernorm.weight") == 0.0  # "norm" comes before layers.0
    assert params.ratio_for("model.layers.0.mlp.up_proj.weight") == 0.5
    assert params.ratio_for("model.layers.1.mlp.up_proj.weight") == 2.0
    apply_chat_vector(kor, base, inst, tmp_path / "out", params)
    out, k, i = load_model(tmp_path / "out"), load_model(kor), load_model(inst)
    assert_bitwise(out, reference(k, load_model(base), i, params.ratio_for, torch.bfloat16))
    for n in ("model.embed_tokens.weight", "lm_head.weight"):
        rows = torch.tensor(SPECIAL)
        assert torch.equal(bits(out[n][rows]), bits(i[n][rows]))  # instruct's rows, bit for bit
        others = torch.ones(out[n].shape[0], dtype=torch.bool)
        others[rows] = False
        assert torch.equal(bits(out[n][others]), bits(k[n][others]))  # ratio 0: korean's rows untouched
    assert torch.equal(out["model.norm.weight"], k["model.norm.weight"])


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])  # fused numba kernel (float32 partial sums), numpy path
def test_metrics(tmp_path, dtype):
    kor, base, inst = make_trio(tmp_path, DTYPES[dtype])
    params = section_params("chat_vector", ratio=0.5, special_token_ids=[])
    m = apply_chat_vector(kor, base, inst, tmp_path / "out", params)
    k, b, i = load_model(kor), load_model(base), load_model(inst)
    assert m["tensors"] == len(k) and m["parameters"] == sum(t.numel() for t in k.values())
    assert set(m["vector_norm"]) == {"total", "embeddings", "attention", "mlp", "norms"}
    d_total = sum(float(((i[n].double() - b[n].double()) ** 2).sum()) for n in k) ** 0.5
    k_total = sum(float((t.double() ** 2).sum()) for t in k.values()) ** 0.5
    assert m["vector_norm"]["total"] == pytest.approx(d_total, rel=2e-4)  # the fused kernel sums squares in float32
    assert m["relative_change"]["total"] == pytest.approx(0.5 * d_total / k_total, rel=2e-4)
    d_mlp = sum(float(((i[n].double() - b[n].double()) ** 2).sum()) for n in k if ".mlp." in n) ** 0.5
    assert m["vector_norm"]["mlp"] == pytest.approx(d_mlp, rel=2e-4)
    assert m["seconds"] >= 0 and m["peak_rss_mb"] > 0


def test_huge_finite_values_are_not_taken_for_nan(tmp_path):
    kor, base, inst = make_trio(tmp_path, torch.bfloat16)
    k = load_model(kor)
    k["model.norm.weight"][0] = 1e30  # its float32 square overflows; the value itself is fine in bf16
    kor2 = write_model(tmp_path / "kor2", k)
    m = apply_chat_vector(kor2, base, inst, tmp_path / "out", section_params("chat_vector", special_token_ids=SPECIAL))
    assert m["relative_change"]["norms"] >= 0 and m["vector_norm"]["total"] > 0
    ref = reference(k, load_model(base), load_model(inst), lambda n: 1.0, torch.bfloat16)
    assert_bitwise(load_model(tmp_path / "out"), ref)


def test_output_layout_and_files_from_instruct(tmp_path):
    kor, base, inst = make_trio(tmp_path, torch.bfloat16)
    (inst / "original" / "consolidated.00.pth").write_bytes(b"not copied")
    apply_chat_vector(kor, base, inst, tmp_path / "out", section_params("chat_vector"))
    out = tmp_path / "out"
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["eos_token_id"] == 128009 and cfg["hidden_size"] == 16
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                 "original/tokenizer.model", "original/params.json"):
        assert (out / name).read_bytes() == (inst / name).read_bytes(), name
    assert not (out / "original" / "consolidated.00.pth").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(load_model(kor))
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in load_model(out).values())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp dir left behind


def test_vocab_mismatch_is_refused(tmp_path):
    kor, base, inst = make_trio(tmp_path, torch.bfloat16)
    k = load_model(kor)
    for n in ("model.embed_tokens.weight", "lm_head.weight"):
        k[n] = torch.cat([k[n], torch.randn(64, k[n].shape[1]).bfloat16()])
    kor2 = write_model(tmp_path / "korean_ext", k)
    with pytest.raises(InputError, match=r"(embed_tokens|lm_head)\.weight.*\[128320, 16\].*korean_ext.*\[128256, 16\]"):
        apply_chat_vector(kor2, base, inst, tmp_path / "out", section_params("chat_vector"))
    assert not (tmp_path / "out").exists()


def test_stage_cli_and_help(tmp_path, repo_root):
    kor, base, inst = make_trio(tmp_path, torch.bfloat16)
    params = params_with(tmp_path, "chat_vector", ratio=0.5, special_token_ids=[128009])
    cmd = [sys.executable, "-m", "stages.chat_vector", "--params", str(params), "--korean", str(kor), "--base",
           str(base), "--instruct", str(inst), "--out", str(tmp_path / "out"), "--metrics", str(tmp_path / "m.json")]
    r = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "chat_vector: 21 tensors" in r.stdout
    assert json.loads((tmp_path / "m.json").read_text())["ratio"] == 0.5
    r = subprocess.run(cmd[:-4] + ["--out", str(tmp_path / "out2"), "--metrics", str(tmp_path / "m2.json")]
                       + ["--korean", str(tmp_path / "nope")], cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr
    h = subprocess.run([sys.executable, "-m", "stages.chat_vector", "--help"], cwd=repo_root, capture_output=True,
                       text=True)
    assert h.returncode == 0 and "python -m stages.chat_vector --korean" in h.stdout


def test_params_reject_bad_regex_and_unknown_keys():
    with pytest.raises(ValueError, match="not a valid regex"):
        ChatVectorParams(**section_values("chat_vector", overrides={"(": 0.0}))
    with pytest.raises(ValueError):
        ChatVectorParams(**section_values("chat_vector", ratios=1.0))
