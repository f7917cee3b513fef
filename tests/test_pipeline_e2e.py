"""End to end: the embedded default `dvc repro` in a copy of the repo, then a no-op rerun, a push/pull through a
local-folder remote into a fresh clone, an experiment on one translate param that reruns exactly its
dependents, wrong params that fail before any output is touched, outputs hardlinked into the cache, and a
reverted param restored from the run cache. The tests share one pipeline run, the session's `default_pipeline`
(started in the background when the tests are collected): the first two read it where it ran (one xdist group, so
the `repro` fixture is set up once); every other test works on its own copy (`pipeline`), so they are independent
and spread over the workers."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_helpers import VENV_BIN, dvc, git, pipeline_env, ran_stages, run

from koblla.evaluate.report import load_models

pytestmark = pytest.mark.slow

EVAL_MODELS = [m.key for m in load_models(Path(__file__).resolve().parents[1] / "dvc.yaml")]
RECIPE_STAGES = {"check_params", "extract_wiki", "translate", "finetune_base", "chat_vector", "finetune_instruct",
                 "report"} | {f"evaluate@{m}" for m in EVAL_MODELS}


@pytest.fixture(scope="module")
def repro(default_pipeline):
    """(repo, stdout, seconds) of the session's default `dvc repro` (make_tiny_models, then every other stage), read
    where it ran: read-only."""
    tiny, rest = default_pipeline.tiny_run(), default_pipeline.full()
    print(f"default dvc repro took {tiny.seconds + rest.seconds:.1f} s (make_tiny_models {tiny.seconds:.1f} s)")
    return default_pipeline.repo, tiny.stdout + rest.stdout, tiny.seconds + rest.seconds


@pytest.fixture
def pipeline(repro, default_pipeline, tmp_path):
    """(repo, stdout, seconds) as `repro`, in a private copy (git, DVC cache and run cache, outputs) to change."""
    _, stdout, seconds = repro
    return default_pipeline.clone(tmp_path / "repo"), stdout, seconds


@pytest.mark.xdist_group("default_pipeline")
def test_repro_runs_every_stage(repro):
    repo, stdout, _ = repro
    ran = ran_stages(stdout)
    # The copy starts with no DVC cache, so every stage with cached outputs must run. `report` reads only the
    # git-tracked metrics files: it is skipped exactly when the fresh scores equal the committed ones.
    assert RECIPE_STAGES - {"report"} | {"make_sample_dump", "make_tiny_models"} <= ran, ran
    if "report" not in ran:
        assert git("status", "--porcelain", "metrics/eval", "reports/results.md", cwd=repo).stdout.strip() == "", (
            "report was skipped although the evaluation metrics changed"
        )


@pytest.mark.xdist_group("default_pipeline")
def test_outputs_and_metrics(repro):
    repo, _, _ = repro
    for split in ("train", "dev", "test"):
        assert (repo / f"data/kowiki/{split}.csv").is_file()
    train = pd.read_csv(repo / "data/kowiki/train.csv")
    assert list(train.columns[:5]) == ["id", "revid", "url", "title", "text"] and len(train) > 0
    for name in ("kolima", "bilima_en_ko", "bilima_ko_en"):
        rows = [json.loads(line) for line in (repo / f"data/lima_ko/{name}.jsonl").read_text().splitlines()]
        assert rows and all(r["messages"] for r in rows)
    for model in ("koblla-base", "koblla-chatvec", "koblla-instruct"):
        d = repo / "models" / model
        assert (d / "config.json").is_file() and (d / "model.safetensors.index.json").is_file(), d
        assert not (d / "adapter_config.json").exists(), "merged weights and adapters must be kept apart"
    for adapter in ("koblla-base-adapter", "koblla-instruct-adapter"):
        assert (repo / "models" / adapter / "adapter_model.safetensors").is_file()
    for m in ("extract_wiki", "translate", "finetune_base", "chat_vector", "finetune_instruct"):
        assert json.loads((repo / f"metrics/{m}.json").read_text()), m
    for m in EVAL_MODELS:
        scores = json.loads((repo / f"metrics/eval/{m}.json").read_text())
        mc2 = [v for k, v in scores.items() if k.startswith("truthfulqa_mc2") and k.endswith("/acc")]
        assert mc2 and 0.0 <= mc2[0] <= 1.0, scores
    table = (repo / "reports/results.md").read_text()
    assert "KoBLLa-Inst." in table and "Llama-3" in table
    # DVC sees the declared metrics and plots.
    shown = json.loads(dvc("metrics", "show", "--json", cwd=repo).stdout)
    assert shown, "dvc metrics show found no metrics"
    plots = json.loads(dvc("plots", "show", "--json", cwd=repo).stdout)["data"]
    assert "dvclive/finetune_base/plots/metrics/loss.tsv" in plots, list(plots)
    assert "dvclive/finetune_instruct/plots/metrics/loss.tsv" in plots, list(plots)


def test_second_repro_does_nothing(pipeline):
    repo, _, _ = pipeline
    t0 = time.monotonic()
    out = dvc("repro", cwd=repo)
    print(f"no-op dvc repro took {time.monotonic() - t0:.1f} s")
    assert ran_stages(out.stdout) == set(), out.stdout
    assert "up to date" in dvc("status", cwd=repo).stdout


def test_push_then_pull_into_fresh_clone(pipeline, tmp_path):
    repo, _, _ = pipeline
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "shared", str(remote), cwd=repo)
    dvc("push", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "pipeline results", cwd=repo)
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    dvc("pull", cwd=clone)
    assert (clone / "models/koblla-instruct/config.json").is_file()
    assert "up to date" in dvc("status", cwd=clone).stdout
    # Nothing reruns after a pull: the lock file and the pulled outputs agree.
    assert ran_stages(dvc("repro", cwd=clone).stdout) == set()


def test_exp_run_on_translate_param_reruns_only_dependents(pipeline):
    repo, _, _ = pipeline
    git("add", "-A", cwd=repo)
    run(["git", "commit", "-q", "--allow-empty", "-m", "before experiment"], cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["translate"]["system_prompt"] == ""
    # -S takes Hydra override syntax: a value with spaces is quoted.
    out = dvc("exp", "run", "-S", "translate.system_prompt='너는 친절한 한국어 도우미야.'", cwd=repo, timeout=900)
    ran = ran_stages(out.stdout)
    # report reruns only if the instruct model's scores moved; nothing upstream of translate may rerun (but the
    # params check, which runs on every params.yaml change).
    must = {"check_params", "translate", "finetune_instruct", "evaluate@koblla_inst"}
    assert must <= ran <= must | {"report"}, out.stdout
    kolima = (repo / "data/lima_ko/kolima.jsonl").read_text().splitlines()
    assert json.loads(kolima[0])["messages"][0] == {"role": "system", "content": "너는 친절한 한국어 도우미야."}


# ---- safe experiments, each on its own copy of the pipeline ----------------------------------------------------

def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _snapshot(repo: Path) -> dict[str, str]:
    """sha256 of every file under the output folders."""
    out = {}
    for top in ("data", "models", "metrics", "dvclive", "reports"):
        for f in sorted((repo / top).rglob("*")):
            if f.is_file():
                out[str(f.relative_to(repo))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("how", ["repro", "exp run"])
@pytest.mark.parametrize("param, value, message", [
    ("models.base_dir", "models/meta/typo", r"models\.base_dir: directory 'models/meta/typo' does not exist"),
    ("extract_wiki.min_charz", 10, r"extract_wiki\.min_charz: unknown key"),
    ("extract_wiki.dump", "data/raw/missing.xml.bz2", r"extract_wiki\.dump: file 'data/raw/missing.xml.bz2'"),
])
def test_wrong_param_leaves_outputs_in_place(pipeline, how, param, value, message):
    repo, _, _ = pipeline
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
    # Back to the params before: everything is up to date again, nothing reruns.
    assert "Running stage" not in dvc("repro", cwd=repo).stdout


def test_outputs_are_links_into_the_cache(pipeline):
    """cache.type = hardlink: file and directory outputs alike are the cache's own bytes, never a second copy."""
    repo, _, _ = pipeline
    cache_inodes = {f.stat().st_ino for f in (repo / ".dvc/cache").rglob("*") if f.is_file()}
    checked = 0
    for out in ("data/raw", "data/kowiki", "data/lima_ko", "models"):
        for f in (repo / out).rglob("*"):
            if not f.is_file() or f.name == ".gitignore" or f.stat().st_size == 0:
                continue  # DVC copies empty files
            st = f.stat()
            assert st.st_nlink >= 2 and st.st_ino in cache_inodes, f"{f.relative_to(repo)} is a copy"
            assert not st.st_mode & 0o222, f"{f.relative_to(repo)} is writable: an in-place edit would hit the cache"
            checked += 1
    assert checked >= 40


def test_reverting_a_param_restores_from_the_run_cache(pipeline):
    """Going back is free: a param set back to a value already run restores the outputs (models, adapter, metrics,
    DVCLive) from DVC's run cache instead of training again."""
    repo, _, _ = pipeline
    dvc("repro", "finetune_base", cwd=repo)
    # (metrics/finetune_base.timings.json, dvclive/finetune_base.timings/: logs of whichever run came last, not
    # outputs: left out)
    first = {k: v for k, v in _snapshot(repo).items()
             if ("finetune_base" in k or "koblla-base" in k) and ".timings" not in k}
    assert any(k.startswith("models/koblla-base/") for k in first) and "metrics/finetune_base.json" in first
    original = (repo / "params.yaml").read_text(encoding="utf-8")
    lr = yaml.safe_load(original)["finetune_base"]["lr"]
    changed = original.replace(f"  lr: {lr} ", f"  lr: {lr / 2} ", 1)  # the first `lr:` is finetune_base's
    assert yaml.safe_load(changed)["finetune_base"]["lr"] == lr / 2
    (repo / "params.yaml").write_text(changed, encoding="utf-8")
    assert "finetune_base" in ran_stages(dvc("repro", "finetune_base", cwd=repo).stdout)
    (repo / "params.yaml").write_text(original, encoding="utf-8")
    out = dvc("repro", "finetune_base", cwd=repo).stdout
    assert "finetune_base" not in ran_stages(out), out
    assert "Stage 'finetune_base' is cached - skipping run, checking out outputs" in out, out
    again = {k: v for k, v in _snapshot(repo).items()
             if ("finetune_base" in k or "koblla-base" in k) and ".timings" not in k}
    assert again == first
