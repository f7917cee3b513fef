"""params.yaml validation: every section typed, unknown sections and keys rejected with their names."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from koblla.errors import ParamsError
from koblla.params import SECTIONS, load_section, require_path, validate_all


def test_repo_params_validate(repo_root):
    sections = validate_all(repo_root / "params.yaml")
    assert set(sections) == set(SECTIONS), "params.yaml should carry every section"


def test_every_dvc_stage_params_section_exists(repo_root):
    dvc = yaml.safe_load((repo_root / "dvc.yaml").read_text())
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            key = entry if isinstance(entry, str) else next(iter(entry))
            if key.endswith(".yaml"):
                continue  # a whole params file (check_params tracks all of params.yaml)
            assert key.split(".")[0] in params, f"stage {name} lists params {key!r} missing from params.yaml"


def _write(tmp_path: Path, data: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return p


def test_unknown_section_is_named(tmp_path):
    p = _write(tmp_path, {"common": {"seed": 1}, "finetune_bsae": {}})
    with pytest.raises(ParamsError, match="finetune_bsae"):
        load_section("common", p)


def test_unknown_key_is_named(tmp_path, repo_root):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["common"]["sede"] = 3
    with pytest.raises(ParamsError, match=r"common\.sede: unknown key"):
        load_section("common", _write(tmp_path, data))


def test_wrong_type_is_named(tmp_path, repo_root):
    data = yaml.safe_load((repo_root / "params.yaml").read_text())
    data["common"]["seed"] = "many"
    with pytest.raises(ParamsError, match=r"common\.seed"):
        load_section("common", _write(tmp_path, data))


def test_missing_params_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_section("common", tmp_path / "nope.yaml")


def test_require_path_names_param_and_path(tmp_path):
    with pytest.raises(ParamsError, match=r"models\.base_dir.*/no/such/dir"):
        require_path("models.base_dir", "/no/such/dir", kind="dir")
    f = tmp_path / "x.txt"
    f.write_text("x")
    assert require_path("translate.input", f) == f
    with pytest.raises(ParamsError, match="directory"):
        require_path("models.base_dir", f, kind="dir")
