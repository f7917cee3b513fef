"""What the stages read from an HF-layout checkpoint folder: its config.json, lora_llama3's shape arguments from it,
and the safetensors files that hold its weights (weight_files: the one listing, for finetune and chat_vector); and
the HF tensor names and shapes of a Llama 3 of a given shape (LLAMA3_8B: Meta-Llama-3-8B's), for the random
checkpoints of benchmarks/gpu_train.sh and the chat_vector tests."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from koblla.errors import InputError


def shard_name(number: int, count: int) -> str:
    """HF's file name of shard `number` (from 1) of `count`: model-00001-of-00004.safetensors."""
    return f"model-{number:05d}-of-{count:05d}.safetensors"


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """The checkpoint's HF config.json."""
    path = model_dir / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read the model config ({e}); is {model_dir} an HF-layout checkpoint?") from e


# Meta-Llama-3-8B's shape (8.03 B parameters), in model_shape()'s names.
LLAMA3_8B = {"vocab_size": 128256, "embed_dim": 4096, "intermediate_dim": 14336, "num_layers": 32, "num_heads": 32,
             "num_kv_heads": 8}


def hf_tensor_shapes(*, vocab_size: int, embed_dim: int, intermediate_dim: int, num_layers: int, num_heads: int,
                     num_kv_heads: int) -> dict[str, tuple[int, ...]]:
    """HF Llama tensor name -> shape, in checkpoint order, for an untied lm_head (Llama 3 8B and 70B)."""
    h, kv = embed_dim, embed_dim // num_heads * num_kv_heads
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab_size, h)}
    for i in range(num_layers):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (h, h), p + "self_attn.k_proj.weight": (kv, h),
                       p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, h),
                       p + "mlp.gate_proj.weight": (intermediate_dim, h),
                       p + "mlp.up_proj.weight": (intermediate_dim, h),
                       p + "mlp.down_proj.weight": (h, intermediate_dim), p + "input_layernorm.weight": (h,),
                       p + "post_attention_layernorm.weight": (h,)})
    shapes.update({"model.norm.weight": (h,), "lm_head.weight": (vocab_size, h)})
    return shapes


def model_shape(model_dir: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """lora_llama3's architecture arguments, from the checkpoint's HF config.json (or `config`, already read)."""
    path = model_dir / "config.json"
    c = read_model_config(model_dir) if config is None else config
    try:
        return {
            "vocab_size": c["vocab_size"],
            "num_layers": c["num_hidden_layers"],
            "num_heads": c["num_attention_heads"],
            "num_kv_heads": c.get("num_key_value_heads", c["num_attention_heads"]),
            "embed_dim": c["hidden_size"],
            "intermediate_dim": c["intermediate_size"],
            "max_seq_len": c["max_position_embeddings"],
            "norm_eps": c.get("rms_norm_eps", 1e-5),
            "rope_base": int(c.get("rope_theta", 500000)),
        }
    except KeyError as e:
        raise InputError(f"{path}: no {e} (expected a Llama 3 config.json)") from None


def weight_files(model_dir: Path, role: str | None = None) -> tuple[list[str], dict[str, str] | None]:
    """The safetensors files that hold an HF checkpoint's weights, and its index's weight_map (None without an index):
    the shards model.safetensors.index.json names, in the order it first names them, else the folder's *.safetensors
    but adapter files, sorted. Every shard the index names must exist. `role` ("base", ...) is named in every
    message."""
    of = f" ({role} model)" if role else ""
    index, weight_map = model_dir / "model.safetensors.index.json", None
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        except (OSError, ValueError) as e:
            raise InputError(f"{index}: cannot read the index ({e}){of}") from None
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(f"{index}: has no weight_map{of}")
        files = list(dict.fromkeys(weight_map.values()))
        missing = [str(model_dir / f) for f in files if not (model_dir / f).is_file()]
        if missing:
            raise InputError(f"{index} names shard(s) that do not exist: {', '.join(missing)}{of}; "
                             "re-download or re-export the checkpoint")
    else:
        files = sorted(p.name for p in model_dir.glob("*.safetensors") if not p.name.startswith("adapter"))
    if not files:
        raise InputError(f"{model_dir}: no model weights{of}: expected model.safetensors.index.json or *.safetensors "
                         "(not an HF checkpoint as `tune download` writes it)")
    return files, weight_map
