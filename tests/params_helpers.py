"""params.yaml's values for tests: a copy of the file with some keys of one section changed (for stage tests), or
one section's validated model with some keys changed (params.yaml is the one home of every value; the pydantic
models carry no defaults)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from conftest import REPO_ROOT


def repo_params() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))


def params_with(tmp_path: Path, section: str, **updates) -> Path:
    data = repo_params()
    data[section].update(updates)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def section_with(section: str, **updates) -> Any:
    """params.yaml's `section`, with `updates` over it, validated (koblla.params.validate_section)."""
    from koblla.params import validate_section

    return validate_section(section, {**repo_params()[section], **updates}, REPO_ROOT / "params.yaml")
