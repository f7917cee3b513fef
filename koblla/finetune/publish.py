"""Publish a torchtune `epoch_N/` folder as two separate outputs at fixed paths.

- adapter: PEFT's adapter_config.json + adapter_model.safetensors (cast to `save_dtype`), written first.
- merged: HF layout (safetensors shards + index + config + tokenizer files + original/tokenizer.model +
  original/params.json): the init checkpoint + that published adapter, merged in float32 and rounded once to
  `save_dtype` (not torchtune's own merged shards, which are in the training dtype and, in bf16, rounded twice).
  AutoModelForCausalLM, chat_vector and evaluate load it.
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
from koblla.dtypes import SHORT_TO_LONG, torch_dtype
from koblla.errors import InputError
from koblla.finetune.checkpoint import weight_files

logger = logging.getLogger(__name__)

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


def merge_lora(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float, dtype: torch.dtype,
               magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """One merged weight: base + (alpha / rank) * B @ A in float32 (the order torchtune's get_merged_lora_ckpt uses),
    rounded once to `dtype`. With DoRA (`magnitude`), each row is then rescaled to magnitude / its norm."""
    merged = weight.float() + (scale * lora_b.float()) @ lora_a.float()
    if magnitude is not None:
        merged = merged * (magnitude.float() / torch.linalg.norm(merged, dim=1)).view(-1, 1)
    return merged.to(dtype).contiguous()


def publish_merged(epoch_dir: Path, base_dir: Path, adapter_dir: Path, out: Path, save_dtype: str,
                   config_text: str) -> list[str]:
    """Write base_dir + the adapter in `adapter_dir` (as published) to `out`, shard by shard (one open at a time),
    with merge_lora; the other files come from `epoch_dir` (torchtune's copies of the init checkpoint's config and
    tokenizer). So the published merged model is exactly the published base + the published adapter, whatever
    device and dtype trained it. Returns the shard names."""
    dtype = torch_dtype(save_dtype)
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    scale = float(cfg["lora_alpha"]) / float(cfg["r"])
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="pt") as f:
        adapter = {k: f.get_tensor(k) for k in f.keys()}
    modules = {k[len("base_model.model."):-len(".lora_A.weight")] for k in adapter if k.endswith(".lora_A.weight")}
    shards, _ = weight_files(base_dir)
    with atomic_dir(out) as tmp:
        weight_map, total, used = {}, 0, set()
        for shard in shards:
            merged = {}
            with safe_open(str(base_dir / shard), framework="pt") as f:
                meta = f.metadata() or {"format": "pt"}
                for k in f.keys():
                    t, module = f.get_tensor(k), k.removesuffix(".weight")
                    if k.endswith(".weight") and module in modules:
                        pre = f"base_model.model.{module}."
                        t = merge_lora(t, adapter[pre + "lora_A.weight"], adapter[pre + "lora_B.weight"], scale,
                                       dtype, adapter.get(pre + "lora_magnitude_vector"))
                        used.add(module)
                    elif t.is_floating_point():
                        t = t.to(dtype).contiguous()
                    merged[k] = t
                    weight_map[k] = shard
                    total += t.numel() * t.element_size()
            save_file(merged, str(tmp / shard), metadata=meta)
            del merged
        if used != modules:
            raise InputError(f"{adapter_dir}: adapter modules {sorted(modules - used)[:5]} have no weight in "
                             f"{base_dir} (not the checkpoint the adapter was trained on?)")
        for src in sorted(epoch_dir.rglob("*")):
            rel = src.relative_to(epoch_dir)
            if (src.is_dir() or src.name in SKIP or src.name == "model.safetensors.index.json"
                    or src.suffix in (".safetensors", ".pt", ".pth", ".bin")):
                continue
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        if (base_dir / "model.safetensors.index.json").is_file():
            index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
        cfg_path = tmp / "config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["torch_dtype"] = SHORT_TO_LONG[save_dtype]  # transformers 4.x key
        if "dtype" in cfg:
            cfg["dtype"] = SHORT_TO_LONG[save_dtype]  # transformers 5 key
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
                         torch_dtype(save_dtype))
        cfg = json.loads((epoch_dir / "adapter_config.json").read_text(encoding="utf-8"))
        # torchtune writes r, lora_alpha, target_modules, peft_type (+ the repo id); PEFT's defaults cover the
        # rest, but dropout and DoRA must be said for the adapter to reload as trained.
        cfg.update({"base_model_name_or_path": base_model, "task_type": "CAUSAL_LM",
                    "lora_dropout": lora_dropout, "use_dora": use_dora, "bias": "none"})
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        (tmp / CONFIG_NAME).write_text(config_text, encoding="utf-8")
