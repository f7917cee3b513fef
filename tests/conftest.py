"""Shared fixtures. Tests needing ../shared/data skip cleanly when it is absent."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import koblla  # noqa: F401  (its CPU reproducibility settings must precede any torch import in this process)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Nothing may download at run time, in tests as in CI.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# Under pytest-xdist, each worker (and every stage or torchtune process it starts) gets its share of the cores, so
# N workers never run N x cores compute threads that wait on each other. Set before torch is imported.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, str(_threads))


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


def _session_root(tmp_path_factory) -> Path:
    """A folder shared by every pytest-xdist worker of this session (each worker's basetemp is a child of it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def default_pipeline(tmp_path_factory):
    """The embedded default pipeline, reproduced once a session in a copy of the repo (tests/pipeline_helpers.py);
    read-only: tests that change it work on `default_pipeline.clone(path)`."""
    from pipeline_helpers import DefaultPipeline

    return DefaultPipeline(_session_root(tmp_path_factory) / "default_pipeline")


@pytest.fixture(scope="session")
def tiny_checkpoints(default_pipeline) -> tuple[Path, Path]:
    """(base_dir, instruct_dir): tiny Llama-3 checkpoints in the exact `tune download` layout, as the
    make_tiny_models stage of the default pipeline writes them (built once a session, copied writable)."""
    return default_pipeline.tiny()


def pytest_collection_modifyitems(config, items):
    """Tests that need no tiny model go first, then those that need only the tiny models, then those that read the
    whole default pipeline (file order otherwise kept). What the selected tests need of the pipeline starts at once
    in the background (once a session, whichever pytest-xdist worker comes first) and runs beside the first group."""
    def tier(item) -> int:
        if "default_pipeline" in item.fixturenames and "tiny_checkpoints" not in item.fixturenames:
            return 2
        return int("tiny_checkpoints" in item.fixturenames)

    items.sort(key=tier)
    if items and tier(items[-1]) and not config.getoption("collectonly"):
        from pipeline_helpers import DefaultPipeline

        root = _session_root(config._tmp_path_factory) / "default_pipeline"
        DefaultPipeline(root).prefetch(full=tier(items[-1]) == 2)
