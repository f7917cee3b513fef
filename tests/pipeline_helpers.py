"""Run the real DVC pipeline in a throwaway copy of the repo (used by the end-to-end tests)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT

VENV_BIN = Path(sys.executable).parent


def pipeline_env() -> dict[str, str]:
    """Stage commands run `python -m stages.X`: the test's venv goes first on PATH; nothing downloads."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DVC_NO_ANALYTICS="1")
    env.setdefault("GIT_AUTHOR_NAME", "KoBLLa test")
    env.setdefault("GIT_AUTHOR_EMAIL", "test@koblla.local")
    env.setdefault("GIT_COMMITTER_NAME", "KoBLLa test")
    env.setdefault("GIT_COMMITTER_EMAIL", "test@koblla.local")
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=pipeline_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (f"{' '.join(cmd)} failed in {cwd} ({out.returncode}):\n"
                                 f"{out.stdout[-6000:]}\n{out.stderr[-6000:]}")
    return out


def dvc(*args: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return run([str(VENV_BIN / "dvc"), *args], cwd=cwd, timeout=timeout)


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run(["git", *args], cwd=cwd)


def copy_repo(dest: Path) -> Path:
    """Copy the tracked and untracked-but-not-ignored files of this checkout into a fresh git repo at `dest`."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    git("init", "-q", "-b", "main", cwd=dest)
    git("add", "-A", cwd=dest)
    git("commit", "-q", "-m", "pipeline under test", cwd=dest)
    return dest


def ran_stages(output: str) -> set[str]:
    """Names of the stages that `dvc repro` / `dvc exp run` actually ran (not skipped)."""
    return set(re.findall(r"Running stage '([^']+)'", output))
