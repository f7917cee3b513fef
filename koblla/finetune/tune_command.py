"""The `tune run` command of a finetune stage: which recipe copy, which launcher arguments, one finished config.

One device runs `tune run koblla/finetune/tune_recipes/lora_finetune_single_device.py --config FILE`; more than one
runs `tune run --nproc_per_node N [--nnodes M --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:PORT
--rdzv_id koblla-<stage>] koblla/finetune/tune_recipes/lora_finetune_distributed.py --config FILE` (torchrun under
the hood). FILE is the finished config koblla.finetune.tune_config writes: no key=value overrides follow it. The two
recipes are our copies of torchtune 0.6.1's (`tune cp`) with a few marked fixes (docs/finetune.md).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from koblla.finetune.params import FinetuneParams

RECIPE_SINGLE = "lora_finetune_single_device"
RECIPE_DISTRIBUTED = "lora_finetune_distributed"
RECIPE_DIR = Path(__file__).resolve().parent / "tune_recipes"  # our copies of the two recipes (recipe_path)


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


def build_command(p: FinetuneParams, stage: str, config: str | os.PathLike, executable: str | None = None) -> list[str]:
    """`tune run [launcher args] RECIPE --config FILE`; `executable` replaces the venv's `tune` (e.g. "tune" in the
    re-run line saved beside a model)."""
    return [executable or tune_executable(), "run", *launcher_args(p, stage), recipe_path(p), "--config", str(config)]
