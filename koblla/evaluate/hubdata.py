"""The HF datasets that lm-eval's built-in tasks read: fill the local cache once, then check it offline.

lm-eval loads a built-in task's data (`dataset_path`, `dataset_name`) with `datasets.load_dataset` when the task is
built, i.e. after the model has loaded; offline and uncached that fails after ~40 s per task. `python -m
stages.fetch_eval_data` (on a machine with network) fills the cache for every task in evaluate.tasks, groups such as
kmmlu and haerae expanded to their subsets; the evaluate stage calls `check_cached` before any model loads.
Local tasks (evals/, files of ours) are not looked up here.
"""
from __future__ import annotations

import logging
from pathlib import Path

from koblla.errors import InputError

log = logging.getLogger(__name__)
FETCH_COMMAND = "python -m stages.fetch_eval_data"


def hub_datasets(tm, names: list[str], evals_dir: str | Path) -> dict[str, tuple[str, str | None]]:
    """{built-in leaf task: (dataset id, config name)} for every task lm-eval will load from the hub."""
    from lm_eval.tasks._yaml_loader import load_yaml

    from koblla.evaluate.tasks import leaf_tasks, local_leaf_tasks

    local = local_leaf_tasks(tm, names, evals_dir)
    out = {}
    for task, path in leaf_tasks(tm, names).items():
        if task in local:
            continue
        cfg = load_yaml(path, resolve_func=False)
        if cfg.get("dataset_path"):
            out[task] = (cfg["dataset_path"], cfg.get("dataset_name"))
    return out


def _load(dataset_id: str, config: str | None):
    import datasets

    return datasets.load_dataset(dataset_id, config)


def check_cached(datasets_by_task: dict[str, tuple[str, str | None]]) -> None:
    """Every dataset loads as lm-eval will load it (from the cache alone under HF_DATASETS_OFFLINE=1), or
    InputError naming the task, the dataset id and the command that fetches it."""
    for task, (dataset_id, config) in sorted(datasets_by_task.items()):
        try:
            _load(dataset_id, config)
        except Exception as e:  # noqa: BLE001 - datasets raises several types for "not cached"
            raise InputError(
                f"evaluate task {task}: its dataset {dataset_id}" + (f" (config {config})" if config else "")
                + f" is not in the local HF datasets cache ({type(e).__name__}). On a machine with network run "
                f"`{FETCH_COMMAND}` (same HF_HOME / HF_DATASETS_CACHE as here), then rerun"
            ) from None
    if datasets_by_task:
        log.info("%d hub datasets found in the local cache", len(datasets_by_task))


def fetch_all(datasets_by_task: dict[str, tuple[str, str | None]]) -> int:
    """Download every dataset into the cache (needs network: run without HF_DATASETS_OFFLINE), then verify each
    loads again; return the count. Verify offline afterwards with `--check-only` under HF_DATASETS_OFFLINE=1."""
    seen = set()
    for task, key in sorted(datasets_by_task.items()):
        if key not in seen:
            log.info("fetching %s%s (task %s)", key[0], f" / {key[1]}" if key[1] else "", task)
            _load(*key)
            seen.add(key)
    check_cached(datasets_by_task)
    return len(seen)
