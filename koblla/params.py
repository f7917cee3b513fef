"""params.yaml: one typed section per stage, validated when a stage starts; unknown keys are rejected.

Each stage's section model lives beside that stage's logic (e.g. `koblla.wiki.params.ExtractWikiParams`) and is
registered in SECTIONS below, so `load_section("extract_wiki")` and `validate_all()` see the same schema.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from koblla.errors import ParamsError

DEFAULT_PARAMS = "params.yaml"


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class CommonParams(Section):
    """Shared by every stage (values in params.yaml only)."""

    seed: int


class ModelsParams(Section):
    """Where Meta's two checkpoints are, in the layout `tune download` leaves (HF safetensors + original/)."""

    base_dir: str
    instruct_dir: str


# section name -> "module:Class"; imported lazily so a stage only imports what it uses.
SECTIONS: dict[str, str] = {
    "common": "koblla.params:CommonParams",
    "models": "koblla.params:ModelsParams",
    "tiny_models": "koblla.tiny.params:TinyModelsParams",
    "extract_wiki": "koblla.wiki.params:ExtractWikiParams",
    "translate": "koblla.translate.params:TranslateParams",
    "finetune_base": "koblla.finetune.params:FinetuneBaseParams",
    "chat_vector": "koblla.chat_vector.params:ChatVectorParams",
    "finetune_instruct": "koblla.finetune.params:FinetuneInstructParams",
    "evaluate": "koblla.evaluate.params:EvaluateParams",
}

S = TypeVar("S", bound=Section)


def section_class(name: str) -> type[Section]:
    if name not in SECTIONS:
        raise ParamsError(f"unknown params section {name!r}; known sections: {', '.join(SECTIONS)}")
    module, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def read_params_file(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (run from the repo root, or pass --params PATH)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{path}: unknown section(s) {unknown}; known sections: {', '.join(SECTIONS)}")
    return data


def _format_validation_error(section: str, path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid params in section {section!r}:"]
    for e in err.errors():
        key = ".".join([section, *(str(p) for p in e["loc"])])
        if e["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key (remove it, or check its spelling)")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def validate_section(name: str, raw: Any, path: str | os.PathLike = DEFAULT_PARAMS) -> Section:
    cls = section_class(name)
    try:
        return cls.model_validate(raw if raw is not None else {})
    except ValidationError as e:
        raise ParamsError(_format_validation_error(name, Path(path), e)) from None


def load_section(name: str, path: str | os.PathLike = DEFAULT_PARAMS) -> Any:
    """Validate and return one section of params.yaml (the whole file is checked for unknown sections)."""
    data = read_params_file(path)
    return validate_section(name, data.get(name), path)


def validate_all(path: str | os.PathLike = DEFAULT_PARAMS) -> dict[str, Section]:
    """Validate every section present in params.yaml; used by tests and `python -m stages.check_params`."""
    data = read_params_file(path)
    return {name: validate_section(name, data[name], path) for name in SECTIONS if name in data}


def require_path(param: str, value: str | os.PathLike, kind: str = "file") -> Path:
    """Fail at once, naming the param and the path, when an input `value` is missing.

    kind: "file", "dir" or "any".
    """
    p = Path(value)
    ok = {"file": p.is_file(), "dir": p.is_dir(), "any": p.exists()}[kind]
    if not ok:
        what = {"file": "file", "dir": "directory", "any": "path"}[kind]
        raise ParamsError(
            f"params {param}: {what} {str(p)!r} does not exist "
            f"(set {param} in params.yaml, or `dvc exp run -S {param}=PATH`)"
        )
    return p
