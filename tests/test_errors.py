"""Failures the library once raised as bare RuntimeError/ValueError are koblla.errors types (exit code 2, one line)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT

from koblla.errors import EvaluationError, InputError, KoBLLaError, ParamsError
from koblla.params import load_section


def test_lm_eval_without_results_is_an_evaluation_error(monkeypatch):
    """lm-eval gives None on non-zero ranks of a multi-process run."""
    import lm_eval

    from koblla.evaluate import harness

    monkeypatch.setattr(harness, "continuation_logits_hflm", lambda: lambda **kw: object())
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: None)
    p = load_section("evaluate", REPO_ROOT / "params.yaml")
    with pytest.raises(EvaluationError, match="lm-eval returned no results"):
        harness.run_lm_eval(None, None, None, ["truthfulqa_mc2_local"], p, False, 0)
    assert issubclass(EvaluationError, KoBLLaError)


def test_index_name_needs_a_multistream_dump_name():
    from koblla.wiki.multistream import index_path_for

    with pytest.raises(InputError, match=r"kowiki\.xml: a multistream dump name ends with \.xml\.bz2"):
        index_path_for("kowiki.xml")


def test_page_without_id_is_an_input_error(tmp_path):
    from koblla.wiki.multistream import write_multistream

    with pytest.raises(InputError, match="no <title> and <id> found"):
        write_multistream(b"<mediawiki>", [b"<page><ns>0</ns></page>"], b"</mediawiki>", tmp_path / "d.xml.bz2")


def test_unknown_backend_is_a_params_error():
    from koblla.translate.backends import make_backend

    with pytest.raises(ParamsError, match="translate.backend: unknown backend 'nope'"):
        make_backend(SimpleNamespace(backend="nope"), None, None)
