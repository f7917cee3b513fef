"""Build the `tune run` command of a finetune stage: params.yaml -> key=value overrides of a torchtune config.

One device runs `tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config FILE k=v ...`; more
than one runs `tune run --nproc_per_node N [--nnodes M --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:PORT]
koblla/finetune/tune_recipes/lora_finetune_distributed.py --config FILE k=v ...` (torchrun under the hood). The two
recipes are our copies of torchtune 0.6.1's (`tune cp`) with a few marked fixes (docs/finetune.md). The effective
config is torchtune's own merge of the YAML and the overrides, so what we save beside the model is what the recipe ran.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from koblla.errors import InputError
from koblla.finetune.params import FinetuneBaseParams, FinetuneInstructParams, FinetuneParams

RECIPE_SINGLE = "lora_finetune_single_device"
RECIPE_DISTRIBUTED = "lora_finetune_distributed"
RECIPE_DIR = Path(__file__).resolve().parent / "tune_recipes"  # our copies of the two recipes (recipe_path)
# Keys that say where and how this attempt runs, not what it trains: left out of the config hash.
VOLATILE_KEYS = ("output_dir", "resume_from_checkpoint", "metric_logger", "checkpointer.output_dir")


def fmt(value: Any) -> str:
    """A Python value as torchtune's CLI (OmegaConf dotlist) reads it back."""
    if value is None:
        return "None"  # torchtune turns the string None into null
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}: {fmt(v)}" for k, v in value.items()) + "}"
    s = str(value)
    if "=" in s:
        raise InputError(f"value {s!r} contains '=', which torchtune's key=value overrides cannot carry")
    # Paths and words pass as they are; anything YAML could misread (spaces, colons, quotes, a number) is quoted.
    plain = s.replace("_", "").replace("-", "").replace("/", "").replace(".", "")
    return s if plain.isalnum() and not s.isdigit() else json.dumps(s, ensure_ascii=False)


def recipe_for(p: FinetuneParams) -> str:
    return RECIPE_SINGLE if p.nproc_per_node * p.nnodes == 1 else RECIPE_DISTRIBUTED


def recipe_path(p: FinetuneParams) -> str:
    """The recipe file `tune run` gets, always as this repo-relative path: `tune run` turns a custom recipe's path
    into a module name (koblla.finetune.tune_recipes.<recipe>) and runs that with `python -m` (torchrun too), so it
    works wherever `koblla` is importable (the repo root, where dvc runs the stages, or PYTHONPATH), and the
    command saved beside a model reads the same in every clone."""
    path = RECIPE_DIR / f"{recipe_for(p)}.py"
    assert path.is_file(), f"{path}: recipe copy missing"
    return f"koblla/finetune/tune_recipes/{path.name}"


def tune_executable() -> str:
    """The `tune` next to the running Python (the venv's), else whatever `tune` is on PATH."""
    here = Path(sys.executable).parent / "tune"
    return str(here) if here.exists() else "tune"


def launcher_args(p: FinetuneParams, stage: str) -> list[str]:
    """`tune run` arguments before the recipe name: empty for one device, torchrun's otherwise."""
    if recipe_for(p) == RECIPE_SINGLE:
        return []
    args = ["--nproc_per_node", str(p.nproc_per_node)]
    if p.nnodes > 1:
        args += ["--nnodes", str(p.nnodes), "--node_rank", str(p.node_rank),
                 "--rdzv_backend", "c10d", "--rdzv_endpoint", p.rdzv_endpoint, "--rdzv_id", f"koblla-{stage}"]
    return args


def build_command(p: FinetuneParams, stage: str, config: str | os.PathLike, overrides: Iterable[str]) -> list[str]:
    return [tune_executable(), "run", *launcher_args(p, stage), recipe_path(p), "--config", str(config), *overrides]


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


def common_overrides(p: FinetuneParams, model_dir: Path, seed: int) -> list[str]:
    o: dict[str, Any] = {f"model.{k}": v for k, v in model_shape(model_dir).items()}
    o.update({
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
        "checkpointer.checkpoint_files": checkpoint_files(model_dir),
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
        "log_peak_memory_stats": p.device == "cuda",
    })
    return [f"{k}={fmt(v)}" for k, v in o.items()]


def base_overrides(p: FinetuneBaseParams, model_dir: Path, data_dir: Path, seed: int) -> list[str]:
    extra = {"dataset.data_files": str(data_dir / "train.csv"), "dataset.column": p.text_column}
    return common_overrides(p, model_dir, seed) + [f"{k}={fmt(v)}" for k, v in extra.items()] + list(p.tune_overrides)


def instruct_overrides(p: FinetuneInstructParams, model_dir: Path, data_dir: Path, seed: int) -> list[str]:
    extra = {
        "dataset.data_dir": str(data_dir),
        "dataset.weights": {k: float(v) for k, v in p.datasets.items()},
        "dataset.new_system_prompt": p.system_prompt or None,
        "dataset.seed": seed,
    }
    return common_overrides(p, model_dir, seed) + [f"{k}={fmt(v)}" for k, v in extra.items()] + list(p.tune_overrides)


def effective_config(config: str | os.PathLike, overrides: list[str]):
    """The DictConfig the recipe receives: the YAML merged with key=value overrides the way torchtune 0.6.1's
    `tune run` does it (torchtune.config._utils._merge_yaml_and_cli_args: `key=value` on a component node sets
    its `_component_`, `None` means null, `~key` deletes). Reimplemented on OmegaConf because importing torchtune
    costs ~6 s of CPU per stage run; tests/test_finetune.py checks it against torchtune's own function."""
    from omegaconf import OmegaConf

    try:
        base = OmegaConf.to_container(OmegaConf.load(config), resolve=False)
    except Exception as e:
        raise InputError(f"{config}: not a readable torchtune YAML ({e})") from e
    dotlist = []
    for arg in overrides:
        if arg.startswith("~"):
            *parents, last = arg[1:].split("=")[0].split(".")
            node = base
            for k in parents:
                node = node[k]
            del node[last]
            continue
        parts = arg.split("=")
        if len(parts) != 2:
            raise InputError(f"override {arg!r} is not key=value (torchtune splits at every '=')")
        k, v = parts
        if isinstance(base.get(k), dict) and "_component_" in base[k]:
            k += "._component_"
        if v == "None":
            v = "!!null"
        if "max_filename" in k:
            v = "!!str " + v
        dotlist.append(f"{k}={v}")
    try:
        return OmegaConf.merge(OmegaConf.create(base), OmegaConf.from_dotlist(dotlist))
    except Exception as e:  # omegaconf's errors name the key; keep the message, add the file
        raise InputError(f"{config}: overrides do not merge into the config: {e}") from e


def fingerprint(paths: Iterable[Path]) -> list[list]:
    """Name (relative to its input), size and SHA-256 of every file under `paths`: a changed input gives a new
    key (a fresh run); a copy of the same bytes, with any mtime and at any place (another node, a fresh clone,
    `dvc checkout`), gives the same one. Hashing reads every byte (about a minute per 16 GB checkpoint)."""
    out = []
    for i, root in enumerate(paths):
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
        for f in files:
            with open(f, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            out.append([i, f.relative_to(root).as_posix() if f != root else f.name, f.stat().st_size, digest])
    return out


def _stable_config(cfg) -> dict:
    """The effective config as a plain dict, minus where a run writes and whether it resumes."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False)
    for key in VOLATILE_KEYS:
        node = data
        *parents, last = key.split(".")
        for k in parents:
            node = node.get(k, {})
        node.pop(last, None)
    return data


def config_hash(cfg) -> str:
    """Hash of what a run trains, from the config alone: the same on every machine and clone (it goes into metrics)."""
    blob = json.dumps(_stable_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_key(cfg, inputs: Iterable[Path]) -> str:
    """Name of a run's scratch folder: the config plus the content of its input files, so that a changed input
    starts a fresh run while a rerun of the same job resumes, on every node and in every clone."""
    blob = json.dumps({"config": _stable_config(cfg), "inputs": fingerprint(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
