"""The check_params stage: a wrong param fails before DVC deletes any finished output."""
from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from koblla.errors import ParamsError
from koblla.preflight import check_params
from pipeline_helpers import VENV_BIN, copy_repo, dvc, git, pipeline_env, ran_stages


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


def _snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file under the output folders."""
    out = {}
    for top in ("data", "models", "metrics", "dvclive", "reports"):
        for f in sorted((repo / top).rglob("*")):
            if f.is_file():
                out[str(f.relative_to(repo))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A copy of the repo with the cheap stages' outputs (dump, tiny models, kowiki CSVs, translations) built by dvc."""
    repo = copy_repo(tmp_path_factory.mktemp("preflight") / "repo")
    dvc("repro", "extract_wiki", "translate", "make_tiny_models", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "built", cwd=repo)
    return repo


@pytest.mark.slow
@pytest.mark.parametrize("how", ["repro", "exp run"])
@pytest.mark.parametrize("param, value, message", [
    ("models.base_dir", "models/meta/typo", r"models\.base_dir: directory 'models/meta/typo' does not exist"),
    ("extract_wiki.min_charz", 10, r"extract_wiki\.min_charz: unknown key"),
    ("extract_wiki.dump", "data/raw/missing.xml.bz2", r"extract_wiki\.dump: file 'data/raw/missing.xml.bz2'"),
])
def test_wrong_param_leaves_outputs_in_place(built, how, param, value, message):
    repo = built
    before = _snapshot(repo)
    assert any(k.startswith("data/kowiki/") for k in before) and any(k.startswith("data/lima_ko/") for k in before)
    original = (repo / "params.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(original)
    section, key = param.split(".")
    data[section][key] = value
    _write(repo / "params.yaml", data)
    try:
        cmd = [str(VENV_BIN / "dvc"), *how.split()]
        r = subprocess.run(cmd, cwd=repo, env=pipeline_env(), capture_output=True, text=True, timeout=600)
        out = r.stdout + r.stderr
        assert r.returncode != 0, out
        assert re.search(message, out), out
        assert "Running stage 'check_params'" in out and out.count("Running stage") == 1, out
        assert _snapshot(repo) == before
    finally:
        (repo / "params.yaml").write_text(original, encoding="utf-8")
    # Back to the committed params: the built stages are up to date again, nothing reruns.
    assert "Running stage" not in dvc("repro", "extract_wiki", "translate", "make_tiny_models", cwd=repo).stdout


@pytest.mark.slow
def test_outputs_are_links_into_the_cache(built):
    """cache.type = hardlink: file and directory outputs alike are the cache's own bytes, never a second copy."""
    repo = built
    cache_inodes = {f.stat().st_ino for f in (repo / ".dvc/cache").rglob("*") if f.is_file()}
    checked = 0
    for out in ("data/raw", "data/kowiki", "data/lima_ko", "models/meta/Meta-Llama-3-8B",
                "models/meta/Meta-Llama-3-8B-Instruct"):
        for f in (repo / out).rglob("*"):
            if not f.is_file() or f.name == ".gitignore" or f.stat().st_size == 0:
                continue  # DVC copies empty files
            st = f.stat()
            assert st.st_nlink >= 2 and st.st_ino in cache_inodes, f"{f.relative_to(repo)} is a copy"
            assert not st.st_mode & 0o222, f"{f.relative_to(repo)} is writable: an in-place edit would hit the cache"
            checked += 1
    assert checked >= 20


@pytest.mark.slow
def test_reverting_a_param_restores_from_the_run_cache(built):
    """Going back is free: a param set back to a value already run restores the outputs (models, adapter, metrics,
    DVCLive) from DVC's run cache instead of training again."""
    repo = built
    dvc("repro", "finetune_base", cwd=repo)
    first = {k: v for k, v in _snapshot(repo).items() if "finetune_base" in k or "koblla-base" in k}
    assert any(k.startswith("models/koblla-base/") for k in first) and "metrics/finetune_base.json" in first
    original = (repo / "params.yaml").read_text(encoding="utf-8")
    changed = original.replace("  lr: 0.0003", "  lr: 0.0001", 1)
    assert changed != original
    (repo / "params.yaml").write_text(changed, encoding="utf-8")
    assert "finetune_base" in ran_stages(dvc("repro", "finetune_base", cwd=repo).stdout)
    (repo / "params.yaml").write_text(original, encoding="utf-8")
    out = dvc("repro", "finetune_base", cwd=repo).stdout
    assert "finetune_base" not in ran_stages(out), out
    assert "Stage 'finetune_base' is cached - skipping run, checking out outputs" in out, out
    again = {k: v for k, v in _snapshot(repo).items() if "finetune_base" in k or "koblla-base" in k}
    assert again == first
