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
