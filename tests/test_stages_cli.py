"""Every stage entry point has --help whose text starts with the exact command that runs it."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

STAGES = sorted(p.stem for p in (REPO_ROOT / "stages").glob("*.py") if p.stem != "__init__")


def test_stage_list_is_not_empty():
    assert "extract_wiki" in STAGES and "evaluate" in STAGES


@pytest.mark.parametrize("stage", STAGES)
def test_help(stage):
    out = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert f"python -m stages.{stage}" in out.stdout, f"--help of stages.{stage} should show the command that runs it"
