"""The check_params stage: a wrong param fails before DVC deletes any finished output."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from koblla.errors import ParamsError
from koblla.preflight import check_params


def _params(repo_root: Path) -> dict:
    return yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_repo_params_pass(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert "extract_wiki" in check_params("params.yaml", "dvc.yaml")


@pytest.mark.parametrize("param, value", [
    ("models.base_dir", "models/meta/no-such-model"),
    ("extract_wiki.dump", "data/raw/kowiki-20991231-pages-articles.xml.bz2"),
    ("translate.input", "assets/lima/nope.jsonl"),
    ("finetune_base.english_eval_text", "assets/eval_text/nope.txt"),
])
def test_missing_input_path_is_named(repo_root, tmp_path, monkeypatch, param, value):
    data = _params(repo_root)
    section, key = param.split(".")
    data[section][key] = value
    p = _write(tmp_path / "params.yaml", data)
    monkeypatch.chdir(repo_root)
    with pytest.raises(ParamsError, match=rf"{param}: .*{value}"):
        check_params(p, "dvc.yaml")


def test_stage_outputs_count_as_present(repo_root, tmp_path, monkeypatch):
    """The default model dirs and dump are made by stages: a fresh clone passes the check before they exist."""
    (tmp_path / "dvc.yaml").write_text((repo_root / "dvc.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    for f in ("assets/lima/lima_sample.jsonl", "assets/lima/translation_memory.jsonl",
              "assets/eval_text/english_heldout.txt", "evals/prompts/v1.jsonl", "prompts/translate_v1.yaml"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes((repo_root / f).read_bytes())
    p = _write(tmp_path / "params.yaml", _params(repo_root))
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "models").exists()
    check_params(p, "dvc.yaml")

# The checks inside real `dvc repro` / `dvc exp run` (outputs untouched by a wrong param), the hardlinked cache and
# the run cache restoring a reverted param are tested on the end-to-end pipeline: tests/test_pipeline_e2e.py.
