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
from koblla.evaluate.samples import builtin_name, check_data_file, has_schema, validate_sample_file

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


def leaf_tasks(tm, names: list[str]) -> dict[str, Path]:
    """{task name: its YAML} for every requested name, or member of a requested tag or group (recursively)."""
    index = tm.task_index
    out: dict[str, Path] = {}

    def visit(name: str) -> None:
        entry = index.get(name)
        if entry is None or name in out:
            return
        if entry.yaml_path is None:  # a tag: its members
            for member in sorted(entry.tags):
                visit(member)
            return
        if entry.kind.name == "GROUP":
            for member in (entry.cfg or {}).get("task", []) or []:
                if isinstance(member, str):
                    visit(member)
                elif isinstance(member, dict) and isinstance(member.get("task"), str):
                    visit(member["task"])
            return
        out[name] = Path(entry.yaml_path).resolve()

    for n in names:
        visit(n)
    return out


def local_leaf_tasks(tm, names: list[str], evals_dir: str | Path) -> dict[str, Path]:
    """leaf_tasks defined in evals_dir (the rest are lm-eval's built-ins, which read the HF hub)."""
    root = Path(evals_dir).resolve()
    return {t: path for t, path in leaf_tasks(tm, names).items() if root in path.parents}


def _data_files(cfg: dict) -> dict[str, list[str]]:
    files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) or {}
    if isinstance(files, (str, list)):
        files = {cfg.get("test_split") or cfg.get("validation_split") or "validation": files}
    return {split: [f] if isinstance(f, str) else list(f) for split, f in files.items()}


def eval_split(cfg: dict) -> str:
    """The split lm-eval scores: test, else validation (as ConfigurableTask picks it)."""
    return cfg.get("test_split") or cfg.get("validation_split") or "test"


def task_specs(tm, names: list[str], evals_dir: str | Path, data_files: dict[str, str]) -> list:
    """What simple_evaluate gets: the task names, except that a local task listed in params evaluate.data_files
    becomes an inline config over that file (lm-eval merges it over the task's own YAML)."""
    from lm_eval.tasks._yaml_loader import load_yaml

    local = local_leaf_tasks(tm, names, evals_dir)
    unknown = sorted(set(data_files) - set(local))
    if unknown:
        raise ParamsError(f"params evaluate.data_files: {unknown} are not local tasks in {evals_dir}/ requested by "
                          f"evaluate.tasks (local: {sorted(local) or 'none'})")
    specs: list = []
    for name in names:
        if name not in data_files:
            specs.append(name)
            continue
        # The whole config (includes and !function resolved, as the TaskManager would): an inline dict spec is
        # built as given, not merged over the registered task.
        cfg = load_yaml(local[name], resolve_func=True)
        cfg["dataset_kwargs"] = {**(cfg.get("dataset_kwargs") or {}), "data_files": {eval_split(cfg): data_files[name]}}
        specs.append(cfg)
    return specs


def check_local_samples(tm, names: list[str], evals_dir: str | Path,
                        data_files: dict[str, str] | None = None) -> dict[str, int | None]:
    """Check the data file(s) of every local task before a model loads; {task: records (None: not counted)}.

    The seven built-in variants are validated against their HF schema; any other local task (ours or a user's)
    needs only existing, non-empty files. `data_files` (params evaluate.data_files) replaces a task's own file."""
    from lm_eval.tasks._yaml_loader import load_yaml

    data_files = data_files or {}
    counts: dict[str, int | None] = {}
    for task, yaml_path in local_leaf_tasks(tm, names, evals_dir).items():
        cfg = load_yaml(yaml_path, resolve_func=False)
        files = {"override": [data_files[task]]} if task in data_files else _data_files(cfg)
        if not files:
            raise ParamsError(f"{yaml_path}: a local task needs dataset_kwargs.data_files (a file of ours)")
        n: int | None = 0
        for split_files in files.values():
            for f in split_files:
                if has_schema(task):
                    n += validate_sample_file(task, f)
                else:
                    c = check_data_file(task, f)
                    n = None if c is None or n is None else n + c
        counts[task] = n
        log.info("%s: data OK (%s records, %s)", task, "?" if n is None else n, yaml_path.name)
    return counts
