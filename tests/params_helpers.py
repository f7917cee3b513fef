"""Write a copy of the repo's params.yaml with some keys of one section changed (for stage tests)."""
from __future__ import annotations

from pathlib import Path

import yaml

from conftest import REPO_ROOT


def params_with(tmp_path: Path, section: str, **updates) -> Path:
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    data[section].update(updates)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _merged(base: dict, updates: dict) -> dict:
    out = dict(base)
    for k, v in updates.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and v else v
    return out


def section_values(section: str, **updates) -> dict:
    """params.yaml's `section` as a dict with `updates` merged in (nested dicts key by key)."""
    data = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))
    return _merged(data[section], updates)


def section_params(section: str, **updates):
    """The validated params of one section: params.yaml's values (the models hold no defaults) with `updates`."""
    from koblla.params import section_class

    return section_class(section).model_validate(section_values(section, **updates))
