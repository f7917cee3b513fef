"""Schemas of the local sample files, the same as the HF datasets that lm-eval's built-in tasks read.

A local task variant in evals/ (e.g. `kobest_copa_local`) reads a JSONL file whose records must look exactly like
the hub dataset's rows (`skt/kobest_v1` copa, `truthfulqa/truthful_qa` multiple_choice), so the built-in prompt and
metric code run on them unchanged. A wrong file fails here, naming the file, line and field, before a model loads.
Any other local task (our ko_bpb / chat_nll_* measures, or a user's own YAML over any file) is not refused: its data
files must exist and be non-empty (`check_data_file`), and lm-eval reads them as the YAML says.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from koblla.errors import InputError


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MCTargets(_Row):
    choices: list[str]
    labels: list[int]

    @model_validator(mode="after")
    def _check(self) -> MCTargets:
        if len(self.choices) < 2 or len(self.choices) != len(self.labels):
            raise ValueError(f"needs >= 2 choices and one label per choice (got {len(self.choices)} choices, "
                             f"{len(self.labels)} labels)")
        if set(self.labels) - {0, 1} or 1 not in self.labels:
            raise ValueError(f"labels must be 0/1 with at least one 1 (got {self.labels})")
        return self


class TruthfulQAMC(_Row):
    """truthfulqa/truthful_qa, config multiple_choice: the true answers come first in both target lists."""

    question: str
    mc1_targets: MCTargets
    mc2_targets: MCTargets

    @model_validator(mode="after")
    def _check(self) -> TruthfulQAMC:
        # lm-eval's doc_to_target is 0 for both tasks: the first choice must be a true one.
        if self.mc1_targets.labels[0] != 1 or sum(self.mc1_targets.labels) != 1:
            raise ValueError("mc1_targets.labels must be [1, 0, 0, ...]: one true answer, listed first")
        if self.mc2_targets.labels[0] != 1:
            raise ValueError("mc2_targets must list a true answer first")
        return self


class KobestBoolQ(_Row):
    paragraph: str
    question: str
    label: int


class KobestCOPA(_Row):
    premise: str
    question: str
    alternative_1: str
    alternative_2: str
    label: int

    @model_validator(mode="after")
    def _check(self) -> KobestCOPA:
        if self.question.strip() not in ("원인", "결과"):
            raise ValueError(f"question must be 원인 or 결과 (got {self.question!r})")
        return self


class KobestWiC(_Row):
    word: str
    context_1: str
    context_2: str
    label: int


class KobestHellaSwag(_Row):
    context: str
    ending_1: str
    ending_2: str
    ending_3: str
    ending_4: str
    label: int


class KobestSentiNeg(_Row):
    sentence: str
    label: int


# built-in task -> (schema, number of classes for `label`; None where the schema has no `label`)
SCHEMAS: dict[str, tuple[type[_Row], int | None]] = {
    "truthfulqa_mc1": (TruthfulQAMC, None),
    "truthfulqa_mc2": (TruthfulQAMC, None),
    "kobest_boolq": (KobestBoolQ, 2),
    "kobest_copa": (KobestCOPA, 2),
    "kobest_wic": (KobestWiC, 2),
    "kobest_hellaswag": (KobestHellaSwag, 4),
    "kobest_sentineg": (KobestSentiNeg, 2),
}


def builtin_name(task: str) -> str:
    """`kobest_copa_local` -> `kobest_copa`: the built-in task whose schema a local variant's file follows."""
    return task.removesuffix("_local")


def has_schema(task: str) -> bool:
    """True for the local variants of the seven built-ins whose HF row schema we know (and check)."""
    return builtin_name(task) in SCHEMAS


def check_data_file(task: str, path: str | Path) -> int | None:
    """Any other local task's data file: it must exist and not be empty. Returns the line count of a JSONL file
    (None for other formats); lm-eval's own loader and the task's YAML decide what a record is."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"task {task}: data file {str(path)!r} does not exist (paths in task YAMLs and in params "
                         f"evaluate.data_files are relative to the repo root: run from there)")
    if path.stat().st_size == 0:
        raise InputError(f"task {task}: data file {path} is empty")
    if path.suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    return None


def validate_sample_file(task: str, path: str | Path) -> int:
    """Check every record of `path` against the schema of `task`'s built-in dataset; return the record count."""
    path = Path(path)
    name = builtin_name(task)
    if name not in SCHEMAS:
        raise InputError(f"task {task}: no known sample schema for {name!r} (known: {', '.join(SCHEMAS)})")
    schema, n_classes = SCHEMAS[name]
    if not path.is_file():
        raise InputError(f"task {task}: sample file {str(path)!r} does not exist (paths in evals/*.yaml are "
                         f"relative to the repo root: run from there)")
    n = 0
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = schema.model_validate(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not valid JSON ({e}); each line must be one record") from None
            except ValidationError as e:
                errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or '<record>'}: {x['msg']}" for x in e.errors())
                fields = ", ".join(schema.model_fields)
                raise InputError(f"{where}: record does not match the {name} schema ({fields}): {errs}") from None
            if n_classes is not None and not 0 <= row.label < n_classes:
                raise InputError(f"{where}: label {row.label} out of range 0..{n_classes - 1} for {name}")
            n += 1
    if n == 0:
        raise InputError(f"task {task}: sample file {path} has no records")
    return n
