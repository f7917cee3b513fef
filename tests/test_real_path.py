"""The real path: Meta-style checkpoints laid out exactly as `tune download` leaves them, and a dump file, all
outside the repo, reached through params.yaml alone. Every stage that reads those inputs runs (extract_wiki the dump,
finetune_base and chat_vector the checkpoints, evaluate@llama3 / evaluate@llama3_inst the checkpoints as they are)
without touching the embedded default's generated inputs, proving no code depends on the demo. The stages
downstream of these read only pipeline outputs, whose paths the default run already exercises end to end
(tests/test_pipeline_e2e.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO_ROOT
from pipeline_helpers import copy_repo, dvc, git, ran_stages

pytestmark = pytest.mark.slow


def test_pipeline_on_external_checkpoints_and_dump(tiny_checkpoints, tmp_path):
    base, instruct = tiny_checkpoints
    dumps = tmp_path / "dumps"
    dump = dumps / "kowiki-20261101-pages-articles-multistream.xml.bz2"
    subprocess.run(
        [sys.executable, "-m", "stages.make_sample_dump", "--src", "assets/kowiki_sample", "--out", str(dump)],
        cwd=REPO_ROOT, check=True, capture_output=True,
    )
    index = dumps / "kowiki-20261101-pages-articles-multistream-index.txt.bz2"
    assert dump.is_file() and index.is_file()

    repo = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text(encoding="utf-8"))
    params["models"] = {"base_dir": str(base), "instruct_dir": str(instruct)}
    params["extract_wiki"].update(dump=str(dump), index=str(index))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    git("commit", "-qam", "real-run params", cwd=repo)

    readers = ["extract_wiki", "finetune_base", "chat_vector", "evaluate@llama3", "evaluate@llama3_inst"]
    out = dvc("repro", *readers, cwd=repo, timeout=1200)
    ran = ran_stages(out.stdout)
    assert "make_tiny_models" not in ran and "make_sample_dump" not in ran, ran
    assert set(readers) <= ran, ran
    # Only the .gitignore files DVC committed for those outputs may be there, never the demo's inputs.
    assert not (repo / "models/meta/Meta-Llama-3-8B").exists()
    assert not (repo / "models/meta/Meta-Llama-3-8B-Instruct").exists()
    assert not list((repo / "data/raw").glob("*.bz2"))
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    deps = {d["path"] for d in lock["stages"]["finetune_base"]["deps"]}
    assert str(base) in deps, deps
    deps = {d["path"] for d in lock["stages"]["chat_vector"]["deps"]}
    assert {str(base), str(instruct), "models/koblla-base"} <= deps, deps
    for model in ("llama3", "llama3_inst"):
        assert json.loads((repo / f"metrics/eval/{model}.json").read_text()), model
    assert (repo / "models/koblla-chatvec/config.json").is_file()
