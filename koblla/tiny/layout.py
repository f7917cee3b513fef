"""Write a torchtune Llama 3 state dict in the exact layout `tune download meta-llama/Meta-Llama-3-8B` leaves.

HF side: config.json, generation_config.json, model-0000N-of-0000M.safetensors + model.safetensors.index.json.
Meta side: original/params.json, original/consolidated.00.pth (plain tensors; loads with weights_only=True).
Plus original_repo_id.json, which `tune download` writes and torchtune copies into adapter configs.
Tokenizer files are written by koblla.tiny.tokenizer.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from torchtune.models.convert_weights import tune_to_hf, tune_to_meta

from koblla.finetune.checkpoint import shard_name
from koblla.tiny.params import TinyModelsParams
from koblla.tiny.tokenizer import BOS_ID, EOS_ID, EOT_ID

VOCAB_SIZE = 128256
MAX_SEQ_LEN = 8192
ROPE_THETA = 500000.0
NORM_EPS = 1e-5
NUM_SHARDS = 2  # Meta ships 4; two are enough to exercise sharded loading
TRANSFORMERS_VERSION = "4.40.0.dev0"  # what Meta's files say; kept so the layout matches a real download


def repo_id(instruct: bool) -> str:
    return "meta-llama/Meta-Llama-3-8B" + ("-Instruct" if instruct else "")


def hf_config(p: TinyModelsParams, instruct: bool) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOT_ID if instruct else EOS_ID,
        "hidden_act": "silu",
        "hidden_size": p.embed_dim,
        "initializer_range": 0.02,
        "intermediate_size": p.intermediate_dim,
        "max_position_embeddings": MAX_SEQ_LEN,
        "model_type": "llama",
        "num_attention_heads": p.num_heads,
        "num_hidden_layers": p.num_layers,
        "num_key_value_heads": p.num_kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": NORM_EPS,
        "rope_scaling": None,
        "rope_theta": ROPE_THETA,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB_SIZE,
    }


def generation_config(instruct: bool) -> dict:
    if instruct:  # Meta-Llama-3-8B-Instruct's, verbatim
        return {
            "bos_token_id": BOS_ID,
            "eos_token_id": [EOS_ID, EOT_ID],
            "do_sample": True,
            "temperature": 0.6,
            "max_length": 4096,
            "top_p": 0.9,
            "transformers_version": TRANSFORMERS_VERSION,
        }
    return {"_from_model_config": True, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID,
            "transformers_version": TRANSFORMERS_VERSION}


def meta_params(p: TinyModelsParams) -> dict:
    """original/params.json. Meta's FFN width is derived: multiple_of * ceil(ffn_dim_multiplier * 8/3 * dim /
    multiple_of); pick the (multiplier, multiple_of) that reproduces intermediate_dim."""
    hidden = int(2 * 4 * p.embed_dim / 3)
    for mult in (1.3, 1.0):
        for multiple_of in (1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1):
            h = int(mult * hidden)
            if multiple_of * ((h + multiple_of - 1) // multiple_of) == p.intermediate_dim:
                return {"dim": p.embed_dim, "n_layers": p.num_layers, "n_heads": p.num_heads,
                        "n_kv_heads": p.num_kv_heads, "vocab_size": VOCAB_SIZE, "multiple_of": multiple_of,
                        "ffn_dim_multiplier": mult, "norm_eps": NORM_EPS, "rope_theta": ROPE_THETA}
    # No Meta-style formula gives this width: state it directly (Meta's loader would need hidden_dim support).
    return {"dim": p.embed_dim, "n_layers": p.num_layers, "n_heads": p.num_heads, "n_kv_heads": p.num_kv_heads,
            "vocab_size": VOCAB_SIZE, "multiple_of": p.intermediate_dim, "ffn_dim_multiplier": None,
            "norm_eps": NORM_EPS, "rope_theta": ROPE_THETA}


def _layer_of(key: str) -> int:
    parts = key.split(".")
    return int(parts[2]) if key.startswith("model.layers.") else -1


def _shard_plan(keys: list[str], num_layers: int) -> list[list[str]]:
    """Shard 1: embeddings + the first half of the layers; shard 2: the rest, final norm and lm_head."""
    cut = (num_layers + 1) // 2
    first = [k for k in keys if k == "model.embed_tokens.weight" or 0 <= _layer_of(k) < cut]
    second = [k for k in keys if k not in first]
    return [first, second]


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """bf16 copies that own their storage (safetensors and torch.save reject or bloat views)."""
    return {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in sd.items()}


def write_checkpoint(out_dir: Path, tune_sd: dict[str, torch.Tensor], p: TinyModelsParams, instruct: bool) -> int:
    """Write weights + configs (bf16) into `out_dir`; return the parameter count."""
    out_dir.mkdir(parents=True, exist_ok=True)
    hf_sd = _contiguous(
        tune_to_hf(tune_sd, num_heads=p.num_heads, num_kv_heads=p.num_kv_heads, dim=p.embed_dim)
    )
    plan = _shard_plan(sorted(hf_sd), p.num_layers)
    assert len(plan) == NUM_SHARDS and all(plan), "every shard must hold tensors"
    weight_map, total = {}, 0
    for i, shard_keys in enumerate(plan, start=1):
        name = shard_name(i, NUM_SHARDS)
        save_file({k: hf_sd[k] for k in shard_keys}, str(out_dir / name), metadata={"format": "pt"})
        for k in shard_keys:
            weight_map[k] = name
            total += hf_sd[k].numel() * hf_sd[k].element_size()
    weight_map = dict(sorted(weight_map.items()))  # alphabetical, as in HF's index files
    _dump(out_dir / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    _dump(out_dir / "config.json", hf_config(p, instruct))
    _dump(out_dir / "generation_config.json", generation_config(instruct))
    _dump(out_dir / "original_repo_id.json", {"repo_id": repo_id(instruct)})
    orig = out_dir / "original"
    orig.mkdir(exist_ok=True)
    _dump(orig / "params.json", meta_params(p))
    torch.save(_contiguous(tune_to_meta(tune_sd)), orig / "consolidated.00.pth")
    return sum(v.numel() for v in hf_sd.values())


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
