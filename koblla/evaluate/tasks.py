"""Resolve the lm-eval task names from params, before any model loads.

Local variants live in evals/ (passed to lm-eval as include_path); built-in names (truthfulqa_mc2, kobest_copa,
kmmlu, haerae ...) come from lm-eval's own task folder. Indexing lm-eval's ~15k built-in configs costs ~11 s on
one core, so it is only done when a requested name is not one of ours.
"""
from __future__ import annotations

import difflib
import logging
from pathlib import Path

from koblla.errors import ParamsError
from koblla.evaluate.samples import builtin_name, validate_sample_file

log = logging.getLogger(__name__)

# Name prefixes of Korean benchmarks (after dropping `_local`); every other task counts as English in the report.
KOREAN_PREFIXES = ("kobest", "kmmlu", "haerae", "kobbq", "ko_", "korean", "click", "kormedmcqa")


def task_language(task: str) -> str:
    """'ko' or 'en': which average of the report a task's score goes into."""
    return "ko" if builtin_name(task).startswith(KOREAN_PREFIXES) else "en"


def make_task_manager(tasks: list[str], evals_dir: str | Path):
    """A TaskManager that knows every name in `tasks`; unknown names fail with close matches listed."""
    from lm_eval.tasks import TaskManager

    evals_dir = Path(evals_dir)
    if not evals_dir.is_dir():
        raise ParamsError(f"lm-eval task folder {str(evals_dir)!r} does not exist (run from the repo root)")
    tm = TaskManager(include_path=str(evals_dir), include_defaults=False)
    if not all(t in tm.all_tasks for t in tasks):
        log.info("indexing lm-eval's built-in tasks (about 10 s)")
        tm = TaskManager(include_path=str(evals_dir))
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        hints = []
        for t in unknown:
            close = difflib.get_close_matches(t, tm.all_tasks, n=4, cutoff=0.6)
            hints.append(f"{t!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ParamsError(
            f"params evaluate.tasks: unknown lm-eval task(s) {'; '.join(hints)}. Local variants are the *.yaml "
            f"files in {evals_dir}/; `lm-eval ls tasks` lists the built-in ones"
        )
    return tm


def local_leaf_tasks(tm, names: list[str], evals_dir: str | Path) -> dict[str, Path]:
    """{task name: its YAML} for every requested name (or member of a requested tag/group) defined in evals_dir."""
    root = Path(evals_dir).resolve()
    index = tm.task_index
    out: dict[str, Path] = {}

    def visit(name: str) -> None:
        entry = index.get(name)
        if entry is None:
            return
        if entry.yaml_path is None:  # a tag: its members
            for member in sorted(entry.tags):
                visit(member)
            return
        path = Path(entry.yaml_path).resolve()
        if root not in path.parents:
            return  # built-in: lm-eval loads it from the hub
        if entry.kind.name == "GROUP":
            for member in (entry.cfg or {}).get("task", []) or []:
                if isinstance(member, str):
                    visit(member)
            return
        out[name] = path

    for n in names:
        visit(n)
    return out


def check_local_samples(tm, names: list[str], evals_dir: str | Path) -> dict[str, int]:
    """Validate the sample file(s) of every local task against its HF schema; {task: records}."""
    from lm_eval.tasks._yaml_loader import load_yaml

    counts = {}
    for task, yaml_path in local_leaf_tasks(tm, names, evals_dir).items():
        cfg = load_yaml(yaml_path, resolve_func=False)
        files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) or {}
        if isinstance(files, (str, list)):
            files = {"validation": files}
        if cfg.get("dataset_path") != "json" or not files:
            raise ParamsError(f"{yaml_path}: a local task needs dataset_path: json and dataset_kwargs.data_files")
        n = 0
        for split_files in files.values():
            for f in [split_files] if isinstance(split_files, str) else split_files:
                n += validate_sample_file(task, f)
        counts[task] = n
        log.info("%s: %d sample records OK (%s)", task, n, yaml_path.name)
    return counts
