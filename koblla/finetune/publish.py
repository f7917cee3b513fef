"""Publish a torchtune `epoch_N/` folder as two separate outputs at fixed paths.

- merged: HF layout (safetensors shards + index + config + tokenizer files + original/tokenizer.model +
  original/params.json), weights cast to `save_dtype` (torchtune writes them in the training dtype; fp32 doubles
  disk and DVC cache). AutoModelForCausalLM, chat_vector and evaluate load it.
- adapter: PEFT's adapter_config.json + adapter_model.safetensors.
They must not share a folder: with peft installed, transformers sees adapter_config.json beside merged weights and
applies the adapter a second time. Both get the effective torchtune config as `torchtune_config.yaml`.
Each folder is written with koblla.atomic.atomic_dir, so a crash never leaves a half-published model.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from koblla.atomic import atomic_dir
from koblla.errors import InputError

logger = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
HF_DTYPE_NAMES = {"bf16": "bfloat16", "fp32": "float32"}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# torchtune-only files that are neither part of the HF model nor of the PEFT adapter.
SKIP = {"adapter_model.pt", "adapter_model.bin", *ADAPTER_FILES}
CONFIG_NAME = "torchtune_config.yaml"


def cast_safetensors(src: Path, dst: Path, dtype: torch.dtype) -> int:
    """Copy one safetensors file, casting floating tensors to `dtype`; returns bytes of tensor data written."""
    out, total = {}, 0
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata() or {"format": "pt"}
        for k in f.keys():
            t = f.get_tensor(k)
            if t.is_floating_point():
                t = t.to(dtype)
            out[k] = t.contiguous()
            total += t.numel() * t.element_size()
    save_file(out, str(dst), metadata=meta)
    return total


def publish_merged(epoch_dir: Path, out: Path, save_dtype: str, config_text: str) -> list[str]:
    """Write the merged HF model of `epoch_dir` to `out`; returns the shard names."""
    dtype = DTYPES[save_dtype]
    shards = sorted(p.name for p in epoch_dir.glob("*.safetensors") if p.name not in SKIP)
    if not shards:
        raise InputError(f"{epoch_dir}: no merged safetensors shards (was save_adapter_weights_only set?)")
    with atomic_dir(out) as tmp:
        total = sum(cast_safetensors(epoch_dir / s, tmp / s, dtype) for s in shards)
        for src in sorted(epoch_dir.rglob("*")):
            rel = src.relative_to(epoch_dir)
            if src.is_dir() or src.name in SKIP or src.suffix in (".safetensors", ".pt", ".pth", ".bin"):
                continue
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        index = tmp / "model.safetensors.index.json"
        if index.is_file():
            data = json.loads(index.read_text(encoding="utf-8"))
            data["metadata"] = {**data.get("metadata", {}), "total_size": total}
            index.write_text(json.dumps(data, indent=2), encoding="utf-8")
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["torch_dtype"] = HF_DTYPE_NAMES[save_dtype]  # transformers 4.x key
        if "dtype" in cfg:
            cfg["dtype"] = HF_DTYPE_NAMES[save_dtype]  # transformers 5 key
        cfg_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        (tmp / CONFIG_NAME).write_text(config_text, encoding="utf-8")
    return shards


def publish_adapter(epoch_dir: Path, out: Path, save_dtype: str, config_text: str, *,
                    base_model: str, lora_dropout: float, use_dora: bool) -> None:
    """Write the PEFT adapter of `epoch_dir` to `out`, pointing base_model_name_or_path at the init checkpoint."""
    missing = [f for f in ADAPTER_FILES if not (epoch_dir / f).is_file()]
    if missing:
        raise InputError(f"{epoch_dir}: torchtune wrote no {missing}")
    with atomic_dir(out) as tmp:
        cast_safetensors(epoch_dir / "adapter_model.safetensors", tmp / "adapter_model.safetensors",
                         DTYPES[save_dtype])
        cfg = json.loads((epoch_dir / "adapter_config.json").read_text(encoding="utf-8"))
        # torchtune writes r, lora_alpha, target_modules, peft_type (+ the repo id); PEFT's defaults cover the
        # rest, but dropout and DoRA must be said for the adapter to reload as trained.
        cfg.update({"base_model_name_or_path": base_model, "task_type": "CAUSAL_LM",
                    "lora_dropout": lora_dropout, "use_dora": use_dora, "bias": "none"})
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        (tmp / CONFIG_NAME).write_text(config_text, encoding="utf-8")
