"""The `hf` backend on real (tiny, random) transformers chat models: it runs batched generation end to end and the
validator flags the garbage a random model writes. Quality is not tested here."""
from __future__ import annotations

import json

import pytest
from params_helpers import section_params

from koblla.errors import KoBLLaError
from koblla.translate import run_translate
from koblla.translate.params import TranslateParams

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="module")
def char_chat_model(tmp_path_factory):
    """A 2-layer random Llama with a character-level tokenizer and a chat template, saved like a Hub model."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("char_chat_model")
    chars = sorted(set("가나다라마바사아자차카타파하요다습니어야 .,?!⟦⟧0123456789abcdefghijklmnopqrstuvwxyz\n"))
    vocab = {"<unk>": 0, "<pad>": 1, "<eos>": 2} | {c: i + 3 for i, c in enumerate(chars)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                      pad_token_id=1, eos_token_id=2, bos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def _params(model_dir, **kw) -> TranslateParams:
    return section_params("translate", backend="hf", model="tiny-random", seed_memory=[], max_attempts=2,
                          hf={"model_path": str(model_dir), "batch_size": 4, "max_new_tokens": 12, "device": "cpu",
                               "dtype": "float32"}, **kw)


def test_hf_backend_runs_and_flags_garbage(char_chat_model, repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    m = run_translate(_params(char_chat_model, limit=2), tmp_path / "o", tmp_path / "tm", tmp_path / "m.json")
    n = m["unique_chunks"]
    assert m["requests"] == 2 * n, "two attempts per chunk: greedy, then sampled"
    assert m["tokens_in"] > 0 and m["tokens_out"] > 0
    assert m["flagged_chunks"] == n and m["items_written"] == 0 and sum(m["failures_by_reason"].values()) >= n
    side = [json.loads(x) for x in (tmp_path / "o" / "side_by_side.jsonl").read_text().splitlines()]
    assert all(r["flags"] for r in side)


def test_hf_backend_needs_a_model_folder(repo_root, tmp_path, monkeypatch):
    monkeypatch.chdir(repo_root)
    with pytest.raises(KoBLLaError, match="model_path.*config.json"):
        run_translate(_params(tmp_path / "nothing"), tmp_path / "o", tmp_path / "tm", None)


@pytest.mark.slow
def test_hf_backend_on_tiny_llama3_instruct(tiny_checkpoints, repo_root, tmp_path, monkeypatch):
    """The tiny Llama-3 instruct stand-in (tune-download layout, real chat template) through the same path."""
    monkeypatch.chdir(repo_root)
    _, instruct = tiny_checkpoints
    m = run_translate(_params(instruct, limit=1), tmp_path / "o", tmp_path / "tm", None)
    assert m["requests"] == 2 * m["unique_chunks"] and m["flagged_chunks"] == m["unique_chunks"]
