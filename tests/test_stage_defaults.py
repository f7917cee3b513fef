"""stages.chat defaults to the instruct model; dependency warnings that say nothing about a run are dropped at
their loggers (koblla.cli.KNOWN_NOISE) while everything else they log still comes through."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

from conftest import REPO_ROOT

from koblla.cli import KNOWN_NOISE, quiet_known_noise


def test_chat_defaults_to_the_instruct_model(tmp_path):
    """Without --model-dir, stages.chat opens models/koblla-instruct (here: absent, so the error names it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-m", "stages.chat", "--params", str(REPO_ROOT / "params.yaml")],
                       cwd=tmp_path, env=env, input="", capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "models/koblla-instruct" in r.stderr, r.stderr


def test_torchao_import_warning_is_dropped():
    code = ("from koblla.cli import setup_logging; setup_logging(); import torchtune, logging; "
            "logging.getLogger('torchao').warning('something else')")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Skipping import of cpp extensions" not in r.stderr and "Detected no triton" not in r.stderr, r.stderr
    assert "something else" in r.stderr


def test_lm_eval_kwarg_warnings_are_dropped(caplog):
    quiet_known_noise()
    with caplog.at_level(logging.WARNING):
        for name, prefixes in KNOWN_NOISE.items():
            for p in prefixes:
                logging.getLogger(name).warning("%s (as the library words it)", p)
            logging.getLogger(name).warning("a real problem in %s", name)
    assert [r.getMessage() for r in caplog.records] == [f"a real problem in {n}" for n in KNOWN_NOISE]
