"""chat_vector on the real tiny pipeline checkpoints: transformers and torchtune load the output."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from chat_vector_helpers import SPECIAL
from params_helpers import section_params
from safetensors.torch import load_file, save_file

from koblla.chat_vector import apply_chat_vector


@pytest.fixture(scope="module")
def chatvec(tiny_checkpoints, tmp_path_factory):
    """(out_dir, base, instruct): korean = base + noise (base's layout), merged with the params.yaml defaults."""
    base, instruct = tiny_checkpoints
    root = tmp_path_factory.mktemp("chatvec")
    korean = root / "koblla-base"
    shutil.copytree(base, korean, ignore=shutil.ignore_patterns("consolidated.00.pth"))
    g = torch.Generator().manual_seed(1)
    for f in korean.glob("*.safetensors"):
        sd = load_file(f)
        save_file({n: (t.float() + torch.randn(t.shape, generator=g) * 1e-3).to(t.dtype) for n, t in sd.items()},
                  f, metadata={"format": "pt"})
    out = root / "koblla-chatvec"
    apply_chat_vector(korean, base, instruct, out, section_params("chat_vector", special_token_ids=SPECIAL))
    return out, base, instruct


@pytest.mark.slow
def test_transformers_loads_output_and_special_rows_are_instructs(chatvec):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _, instruct = chatvec
    model = AutoModelForCausalLM.from_pretrained(out)
    inst = AutoModelForCausalLM.from_pretrained(instruct)
    assert model.dtype == torch.bfloat16
    rows = torch.tensor(SPECIAL)
    for get in (lambda m: m.get_input_embeddings().weight, lambda m: m.get_output_embeddings().weight):
        assert torch.equal(get(model)[rows], get(inst)[rows])
        assert not torch.equal(get(model), get(inst))
    assert model.config.eos_token_id == 128009
    assert 128009 in model.generation_config.eos_token_id
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "안녕하세요"}], add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    assert 128006 in ids and 128007 in ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert torch.isfinite(logits).all()


@pytest.mark.slow
def test_torchtune_checkpointer_and_tokenizer_load_output(chatvec, tmp_path):
    from torchtune.models.llama3 import llama3, llama3_tokenizer
    from torchtune.training import FullModelHFCheckpointer

    out, _, _ = chatvec
    files = sorted(p.name for p in out.glob("model-*-of-*.safetensors"))
    ckpt = FullModelHFCheckpointer(checkpoint_dir=str(out), checkpoint_files=files, model_type="LLAMA3",
                                   output_dir=str(tmp_path))
    sd = ckpt.load_checkpoint()["model"]
    cfg = json.loads((out / "config.json").read_text())
    model = llama3(vocab_size=cfg["vocab_size"], num_layers=cfg["num_hidden_layers"],
                   num_heads=cfg["num_attention_heads"], num_kv_heads=cfg["num_key_value_heads"],
                   embed_dim=cfg["hidden_size"], intermediate_dim=cfg["intermediate_size"], max_seq_len=256,
                   rope_base=int(cfg["rope_theta"]), norm_eps=cfg["rms_norm_eps"])
    model.load_state_dict(sd, strict=True)
    tok = llama3_tokenizer(str(out / "original" / "tokenizer.model"))
    assert tok.encode("안녕", add_bos=True, add_eos=False)[0] == 128000
    assert not (out / "original" / "consolidated.00.pth").exists()
