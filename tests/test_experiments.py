"""Experiments read well: the README's commands work as written (the sweep queues two), `-S` changes one line of
params.yaml, the docs' chat_vector.overrides example passes through `-S`, and `make exps` stays narrow."""
from __future__ import annotations

import difflib
import re
import shlex
import shutil
import subprocess
import sys

import yaml
from conftest import REPO_ROOT
from pipeline_helpers import VENV_BIN, copy_repo, dvc, pipeline_env

from koblla.chat_vector.params import ChatVectorParams


def _apply(tmp_path, *overrides: str) -> tuple[str, str]:
    from dvc.utils.hydra import apply_overrides

    p = tmp_path / "params.yaml"
    shutil.copyfile(REPO_ROOT / "params.yaml", p)
    before = p.read_text(encoding="utf-8")
    apply_overrides(str(p), list(overrides))
    return before, p.read_text(encoding="utf-8")


def _changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_params_yaml_is_a_fixed_point_of_format_params(tmp_path):
    p = tmp_path / "params.yaml"
    shutil.copyfile(REPO_ROOT / "params.yaml", p)
    r = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/format_params.py"), str(p)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert p.read_text(encoding="utf-8") == (REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), (
        "params.yaml is not in DVC's style: run `python scripts/format_params.py`")


def test_set_param_changes_one_line(tmp_path):
    before, after = _apply(tmp_path, "chat_vector.ratio=0.5")
    assert _changed_lines(before, after) == ["-  ratio: 1.0", "+  ratio: 0.5"]


def test_docs_override_example_passes_through_set_param(tmp_path):
    doc = (REPO_ROOT / "docs/chat_vector.md").read_text(encoding="utf-8")
    cmd = re.search(r"`(dvc exp run -S '\+\+chat_vector\.overrides=[^`]*)`", doc).group(1)
    override = shlex.split(cmd)[-1]
    _, after = _apply(tmp_path, override)
    cv = ChatVectorParams.model_validate(yaml.safe_load(after)["chat_vector"])
    assert cv.overrides == {"embed_tokens": 0.0, "lm_head": 0.0, "norm": 0.0}
    assert cv.ratio_for("model.embed_tokens.weight") == 0.0 and cv.ratio_for("model.norm.weight") == 0.0
    assert cv.ratio_for("model.layers.0.mlp.down_proj.weight") == cv.ratio


def _readme_experiment_commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Experiments", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip().startswith(("dvc", "make"))]


def test_readme_sweep_queues_two_and_leaves_the_workspace_clean(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    sweep = next(c for c in _readme_experiment_commands() if "--queue" in c)
    params_before = (repo / "params.yaml").read_bytes()
    r = subprocess.run([str(VENV_BIN / a) if a == "dvc" else a for a in shlex.split(sweep)], cwd=repo,
                       env=pipeline_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("Queued experiment") == 2, r.stdout
    assert (repo / "params.yaml").read_bytes() == params_before, "queueing changed the workspace params"
    status = dvc("queue", "status", cwd=repo).stdout
    assert status.count("Queued") == 2, status
    # The compact view: one row per experiment, the swept param, under 150 columns.
    t = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/exp_table.py")], cwd=repo, env=pipeline_env(),
                       capture_output=True, text=True, timeout=300)
    assert t.returncode == 0, t.stderr
    lines = t.stdout.splitlines()
    assert "chat_vector.ratio" in lines[0] and max(map(len, lines)) <= 150, t.stdout
    col = lines[0].index("chat_vector.ratio")
    assert sorted(row[col:].split()[0] for row in lines[1:] if " queued " in row) == ["0.5", "1"], t.stdout
    dvc("queue", "remove", "--all", cwd=repo)
