"""Shared fixtures. Tests needing ../shared/data skip cleanly when it is absent."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import koblla  # noqa: F401  (its CPU reproducibility settings must precede any torch import in this process)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Nothing may download at run time, in tests as in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (shared test data is only on development machines)")
    return SHARED_DATA


def run_make_tiny_models(params: Path, base: Path, instruct: Path,
                         timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m stages.make_tiny_models` in a fresh process, as `dvc repro` runs it."""
    cmd = [sys.executable, "-m", "stages.make_tiny_models", "--params", str(params),
           "--base-out", str(base), "--instruct-out", str(instruct)]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def build_tiny_in_subprocess(root: Path, seed: int = 42) -> tuple[Path, Path]:
    """The default tiny pair, built by the stage in its own process, so the checkpoints never depend on what
    earlier tests left in this process's torch/BLAS state."""
    root.mkdir(parents=True, exist_ok=True)
    params = root / "params.yaml"
    tiny = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))["tiny_models"]
    params.write_text(yaml.safe_dump({"common": {"seed": seed}, "tiny_models": tiny}), encoding="utf-8")
    base, instruct = root / "Meta-Llama-3-8B", root / "Meta-Llama-3-8B-Instruct"
    r = run_make_tiny_models(params, base, instruct)
    assert r.returncode == 0, f"make_tiny_models failed:\n{r.stdout}\n{r.stderr}"
    return base, instruct


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(base_dir, instruct_dir): tiny Llama-3 checkpoints in the exact `tune download` layout, built once a session."""
    return build_tiny_in_subprocess(tmp_path_factory.mktemp("tiny_models"))
