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


def test_package_docstring_says_which_are_dvc_stages():
    """stages/__init__.py names each entry point once: as a DVC stage iff dvc.yaml runs it, else as a helper."""
    import re

    import yaml

    import stages

    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    cmds = " ".join(s["cmd"] if "cmd" in s else s["do"]["cmd"] for s in dvc.values())
    in_dvc = set(re.findall(r"python -m stages\.(\w+)", cmds))
    dvc_part, helper_part = stages.__doc__.split("Helpers")
    named_dvc = set(re.findall(r"\w+", dvc_part.split("):", 1)[1]))
    named_helpers = set(re.findall(r"^- (\w+):", helper_part, re.M))
    assert named_dvc == in_dvc, "stages/__init__.py's list of DVC stages differs from dvc.yaml's commands"
    assert named_helpers == set(STAGES) - in_dvc, "every other entry point is listed as a helper"
