"""The finished torchtune config of a finetune stage, written to a file that `tune run --config` gets as it is.

configs/finetune_<stage>.yaml holds torchtune's structure and the values no param sets; every key the stage fills
is `???` (OmegaConf's missing value) there. The stage fills them from its params.yaml section, the checkpoint's
config.json and the paths dvc.yaml gives (`stage_values`), then from where and how this attempt runs
(`attempt_values`). A YAML key that is not `???` but filled by the stage is a value written in two places: an error.
`tune_overrides` (params.yaml) sets any other key, by dotted name.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from koblla.atomic import atomic_file
from koblla.errors import InputError
from koblla.finetune.checkpoint import model_shape, weight_files
from koblla.finetune.params import FinetuneBaseParams, FinetuneInstructParams, FinetuneParams

ATTEMPT_KEYS = ("output_dir", "resume_from_checkpoint", "metric_logger.resume")


def shared_values(p: FinetuneParams, model_dir: Path, seed: int) -> dict[str, Any]:
    """The keys both stages fill: model shape (config.json), LoRA, schedule, device; by dotted torchtune name."""
    values: dict[str, Any] = {f"model.{k}": v for k, v in model_shape(model_dir).items()}
    values.update({
        "model.lora_attn_modules": list(p.lora_attn_modules),
        "model.apply_lora_to_mlp": p.lora_mlp,
        "model.apply_lora_to_output": p.lora_output,
        "model.lora_rank": p.lora_rank,
        "model.lora_alpha": p.lora_alpha,
        "model.lora_dropout": p.lora_dropout,
        "model.use_dora": p.use_dora,
        "tokenizer.path": str(model_dir / "original" / "tokenizer.model"),
        "tokenizer.max_seq_len": p.max_seq_len,
        "checkpointer.checkpoint_dir": str(model_dir),
        "checkpointer.checkpoint_files": sorted(weight_files(model_dir)[0]),
        "dataset.packed": p.packed,
        "seed": seed,
        "batch_size": p.batch_size,
        "gradient_accumulation_steps": p.gradient_accumulation_steps,
        "epochs": p.epochs,
        "max_steps_per_epoch": p.max_steps_per_epoch,
        "optimizer.lr": p.lr,
        "optimizer.weight_decay": p.weight_decay,
        "optimizer.fused": p.device == "cuda",  # fused AdamW is a CUDA kernel
        "lr_scheduler.num_warmup_steps": p.warmup_steps,
        "clip_grad_norm": p.clip_grad_norm,
        "compile": p.compile,
        "device": p.device,
        "dtype": p.dtype,
        "enable_activation_checkpointing": p.activation_checkpointing,
        "enable_activation_offloading": p.activation_offloading,
        "log_peak_memory_stats": p.device == "cuda",  # torchtune reads CUDA memory stats only
    })
    return values


def base_values(p: FinetuneBaseParams, model_dir: Path, data_dir: Path, seed: int) -> dict[str, Any]:
    return {**shared_values(p, model_dir, seed),
            "dataset.data_files": str(data_dir / "train.csv"), "dataset.column": p.text_column}


def instruct_values(p: FinetuneInstructParams, model_dir: Path, data_dir: Path, seed: int) -> dict[str, Any]:
    return {**shared_values(p, model_dir, seed),
            "dataset.data_dir": str(data_dir),
            "dataset.weights": {k: float(v) for k, v in p.datasets.items()},
            "dataset.new_system_prompt": p.system_prompt or None,  # null keeps the records' own system turns
            "dataset.seed": seed}


def attempt_values(output_dir: Path, resume: bool) -> dict[str, Any]:
    """Where this attempt writes (torchtune's output_dir) and whether it resumes from a checkpoint there."""
    return {"output_dir": str(output_dir), "resume_from_checkpoint": resume, "metric_logger.resume": resume}


def _fill(cfg, values: dict[str, Any], where: str) -> None:
    """Set each `???` key of `cfg` to its value; a key that is absent or already has a value is an error."""
    from omegaconf import OmegaConf

    for key, value in values.items():
        *parents, last = key.split(".")
        node = OmegaConf.select(cfg, ".".join(parents)) if parents else cfg
        if node is None or last not in node.keys():  # `in node` is False for a ??? value
            raise InputError(f"{where}: no key {key} (the stage fills it: write `{last}: ???` there)")
        if not OmegaConf.is_missing(node, last):
            raise InputError(f"{where}: {key} has a value, but the stage sets it from params.yaml or the "
                             f"checkpoint: write `{last}: ???` there (one home per value)")
        OmegaConf.update(cfg, key, _literal(value), merge=False)  # a param is text, never an interpolation


def _dotted(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"betas": [..]}} and {"optimizer.betas": [..]} (what `dvc exp run -S` and a hand edit write)
    both as {"optimizer.betas": [..]}."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def stage_config(structure: Path, values: dict[str, Any], tune_overrides: dict[str, Any], section: str):
    """The stage's YAML with `values` filled in and `tune_overrides` applied; the attempt keys stay `???`."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(structure)
    except Exception as e:
        raise InputError(f"{structure}: not a readable torchtune YAML ({e})") from e
    _fill(cfg, values, str(structure))
    filled = [*values, *ATTEMPT_KEYS]
    for key, value in _dotted(tune_overrides).items():
        if any(key == f or key.startswith(f + ".") or f.startswith(key + ".") for f in filled):
            raise InputError(f"params.yaml {section}.tune_overrides: {key} is set by the stage; change the "
                             f"{section} param that sets it instead (docs/finetune.md, Params)")
        OmegaConf.update(cfg, key, value, merge=True)
    return cfg


def missing_keys(cfg) -> list[str]:
    """The dotted keys whose value is `???` (OmegaConf's own missing_keys trips over an interpolation to one)."""
    from omegaconf import OmegaConf

    def walk(node, prefix):
        if node == "???":
            yield prefix
        elif isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{prefix}.{k}" if prefix else str(k))

    return sorted(walk(OmegaConf.to_container(cfg, resolve=False), ""))


def finished_config(cfg, output_dir: Path, resume: bool, structure: Path):
    """A copy of the stage config with this attempt's keys filled: nothing `???` is left."""
    done = copy.deepcopy(cfg)
    _fill(done, attempt_values(output_dir, resume), str(structure))
    missing = missing_keys(done)
    if missing:
        raise InputError(f"{structure}: {missing} are ??? but the stage does not fill them; give them a value")
    return done


def _literal(value):
    """`value` with every string escaped so OmegaConf reads it back as written: `${` would start an interpolation
    (`\\${` is a literal one, and backslashes before it are doubled)."""
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    return value


def config_text(cfg, header: str) -> str:
    """The config as `tune run --config` reads it: interpolations resolved, strings literal, after a header."""
    from omegaconf import OmegaConf

    return header + OmegaConf.to_yaml(OmegaConf.create(_literal(OmegaConf.to_container(cfg, resolve=True))))


def write_config(path: Path, text: str) -> Path:
    with atomic_file(path) as f:
        f.write(text)
    return path
