"""Check all of params.yaml before DVC touches any output (the `check_params` stage, first in dvc.yaml).

`dvc repro` deletes a stage's outputs before it runs the stage's command, so a stage that fails on a mistyped param
has already deleted its finished outputs. Every stage therefore depends on the marker this check writes: DVC runs
the check first whenever params.yaml changes, and a failing check stops the run before any other stage starts.

Checked: every section and key (types, unknown keys: koblla.params.validate_all), and every input path a param
names: it must exist, or be (inside) an output of a dvc.yaml stage, which DVC builds before its users run.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from koblla.errors import ParamsError
from koblla.params import DEFAULT_PARAMS, Section, validate_all

# The marker's content never changes, so a params change that passes the check reruns no stage by itself.
MARKER_TEXT = "params.yaml passed stages.check_params (see koblla/preflight.py)\n"


def _declared_outputs(dvc_yaml: Path) -> set[str]:
    """Plain (uninterpolated) output paths of every stage in dvc.yaml, as posix paths."""
    if not dvc_yaml.is_file():
        return set()
    doc = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}
    outs: set[str] = set()
    for stage in (doc.get("stages") or {}).values():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind) or []:
                path = entry if isinstance(entry, str) else next(iter(entry))
                if "${" not in path:
                    outs.add(str(PurePosixPath(path)))
    return outs


def _is_declared_output(path: str, outs: set[str]) -> bool:
    p = PurePosixPath(Path(path).as_posix())
    return any(p == PurePosixPath(o) or PurePosixPath(o) in p.parents for o in outs)


def _path_params(sections: dict[str, Section]) -> Iterable[tuple[str, str, str]]:
    """(param, path, kind) for every input path a param names; kind is "file", "dir" or "any"."""
    models = sections.get("models")
    if models is not None:
        yield "models.base_dir", models.base_dir, "dir"
        yield "models.instruct_dir", models.instruct_dir, "dir"
    wiki = sections.get("extract_wiki")
    if wiki is not None:
        yield "extract_wiki.dump", wiki.dump, "file"
        if wiki.index:
            yield "extract_wiki.index", wiki.index, "file"
    tr = sections.get("translate")
    if tr is not None:
        if tr.input_format != "hf":
            yield "translate.input", tr.input, "file"
        for i, seed in enumerate(tr.seed_memory):
            yield f"translate.seed_memory[{i}]", seed, "file"
        if tr.backend == "hf":
            yield "translate.hf.model_path", tr.hf.model_path, "dir"
        prompt = Path("prompts") / f"translate_{tr.prompt_version}.yaml"
        yield "translate.prompt_version", str(prompt), "file"
    fb = sections.get("finetune_base")
    if fb is not None:
        yield "finetune_base.english_eval_text", fb.english_eval_text, "file"
    ev = sections.get("evaluate")
    if ev is not None:
        yield "evaluate.generation.prompts", ev.generation.prompts, "file"


def check_params(params: str | os.PathLike = DEFAULT_PARAMS,
                 dvc_yaml: str | os.PathLike = "dvc.yaml") -> dict[str, Any]:
    """Validate every section and every input path; raise ParamsError naming each bad param (all of them)."""
    sections = validate_all(params)
    outs = _declared_outputs(Path(dvc_yaml))
    problems = []
    for param, value, kind in _path_params(sections):
        if not value:
            problems.append(f"  {param}: empty path")
            continue
        if _is_declared_output(value, outs):
            continue  # built by a stage before any stage that reads it
        p = Path(value)
        ok = {"file": p.is_file(), "dir": p.is_dir(), "any": p.exists()}[kind]
        if not ok:
            what = {"file": "file", "dir": "directory", "any": "path"}[kind]
            exists = " (it exists, but is not a " + what + ")" if p.exists() else ""
            problems.append(
                f"  {param}: {what} {value!r} does not exist{exists} and no dvc.yaml stage makes it "
                f"(fix it in params.yaml, or `dvc exp run -S {param}=PATH`)"
            )
    if problems:
        raise ParamsError(f"{params}: invalid input paths:\n" + "\n".join(problems))
    return sections
