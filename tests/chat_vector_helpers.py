"""Tiny random Llama-shaped checkpoints for the chat_vector tests, written with safetensors in a temp dir."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from koblla.finetune.checkpoint import hf_tensor_shapes, shard_name
from koblla.tiny.tokenizer import CHAT_TOKEN_IDS

VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 128256, 16, 2, 4, 2, 24
SPECIAL = list(CHAT_TOKEN_IDS)


def shapes(vocab: int = VOCAB, hidden: int = HIDDEN, ffn: int = FFN, layers: int = LAYERS, heads: int = HEADS,
           kv_heads: int = KV_HEADS) -> dict[str, tuple[int, ...]]:
    """HF Llama tensor names -> shapes (untied lm_head), from the library's table."""
    return hf_tensor_shapes(vocab_size=vocab, embed_dim=hidden, intermediate_dim=ffn, num_layers=layers,
                            num_heads=heads, num_kv_heads=kv_heads)


def config(eos) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
            "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
            "max_position_embeddings": 256, "bos_token_id": 128000, "eos_token_id": eos,
            "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def write_model(d: Path, sd: dict[str, torch.Tensor], eos=128001, shards: int = 1, instruct: bool = False) -> Path:
    """HF layout: config.json, model-0000N-of-0000M.safetensors + index (or model.safetensors when shards=0)."""
    d.mkdir(parents=True, exist_ok=True)
    names = list(sd)
    if shards == 0:
        save_file(sd, d / "model.safetensors", metadata={"format": "pt"})
    else:
        groups = [names[j::shards] for j in range(shards)]
        weight_map = {}
        for j, g in enumerate(groups):
            fn = shard_name(j + 1, shards)
            save_file({n: sd[n].contiguous() for n in g}, d / fn, metadata={"format": "pt"})
            weight_map.update({n: fn for n in g})
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (d / "config.json").write_text(json.dumps(config(eos)))
    tag = "instruct" if instruct else "base"
    (d / "tokenizer.json").write_text(json.dumps({"tag": tag}))
    template = "{{ messages }}" if instruct else None
    (d / "tokenizer_config.json").write_text(json.dumps({"tag": tag, "chat_template": template}))
    (d / "special_tokens_map.json").write_text(json.dumps({"tag": tag}))
    (d / "generation_config.json").write_text(json.dumps({"eos_token_id": [128001, 128009] if instruct else 128001}))
    (d / "original").mkdir(exist_ok=True)
    (d / "original" / "tokenizer.model").write_text(f"{tag}\n")
    (d / "original" / "params.json").write_text(json.dumps({"dim": HIDDEN, "n_layers": LAYERS, "n_heads": HEADS,
                                                            "n_kv_heads": KV_HEADS, "vocab_size": VOCAB,
                                                            "rope_theta": 500000.0, "tag": tag}))
    return d


def make_trio(root: Path, dtype=torch.bfloat16, seed: int = 0, shards: int = 3) -> tuple[Path, Path, Path]:
    """(korean, base, instruct): instruct = base + d1, korean = base + d2, random in `dtype`."""
    g = torch.Generator().manual_seed(seed)
    base = {n: torch.randn(s, generator=g) * 0.02 for n, s in shapes().items()}
    inst = {n: t + torch.randn(t.shape, generator=g) * 0.002 for n, t in base.items()}
    kor = {n: t + torch.randn(t.shape, generator=g) * 0.002 for n, t in base.items()}
    cast = lambda sd: {n: t.to(dtype) for n, t in sd.items()}  # noqa: E731
    return (write_model(root / "korean", cast(kor), shards=shards),
            write_model(root / "base", cast(base), shards=shards),
            write_model(root / "instruct", cast(inst), eos=128009, shards=shards, instruct=True))


def load_model(d: Path) -> dict[str, torch.Tensor]:
    sd = {}
    for f in sorted(d.glob("*.safetensors")):
        sd.update(load_file(f))
    return sd


def reference(kor, base, inst, ratio_for, out_dtype, special=SPECIAL) -> dict[str, torch.Tensor]:
    """float64 korean + r * (instruct - base), rounded to out_dtype; special rows are instruct's."""
    out = {}
    for n in kor:
        r = ratio_for(n)
        t = (kor[n].double() + r * (inst[n].double() - base[n].double())).to(out_dtype)
        if n.endswith(("embed_tokens.weight", "lm_head.weight")):
            for s in special:
                t[s] = inst[n][s].double().to(out_dtype)
        out[n] = t
    return out


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
