"""Shared fixtures. Tests needing ../shared/data skip cleanly when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    """(base_dir, instruct_dir): tiny Llama-3 checkpoints in the exact `tune download` layout, built once per session."""
    from koblla.tiny import make_tiny_checkpoints
    from koblla.tiny.params import TinyModelsParams

    root = tmp_path_factory.mktemp("tiny_models")
    base, instruct = root / "Meta-Llama-3-8B", root / "Meta-Llama-3-8B-Instruct"
    make_tiny_checkpoints(base, instruct, TinyModelsParams(), seed=42)
    return base, instruct
