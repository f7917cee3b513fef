"""What the stages read from an HF-layout checkpoint folder: its config.json, lora_llama3's shape arguments from it,
and its safetensors shard names."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from koblla.errors import InputError


def read_model_config(model_dir: Path) -> dict[str, Any]:
    """The checkpoint's HF config.json."""
    path = model_dir / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read the model config ({e}); is {model_dir} an HF-layout checkpoint?") from e


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


def checkpoint_files(model_dir: Path) -> list[str]:
    """The safetensors shards of an HF checkpoint, from its index (or the single file)."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        return sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    if (model_dir / "model.safetensors").is_file():
        return ["model.safetensors"]
    raise InputError(f"{model_dir}: no model.safetensors.index.json or model.safetensors (not an HF checkpoint)")
