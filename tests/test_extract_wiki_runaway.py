"""Nothing runs away in extract_wiki: pathological markup cleans in linear time, pages over the size or time budget
are counted and named skips, too many unparsable pages fail the stage, and the worker processes never outlive it
(kill -9, SIGTERM or SIGINT of the stage stops the whole process tree)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from html import escape

import psutil
import pytest
import yaml
from conftest import REPO_ROOT
from wiki_helpers import multistream, params, replace_page_text, sample_xml

from koblla.errors import InputError
from koblla.wiki.clean import CleanConfig, clean_wikitext
from koblla.wiki.extract import extract_wiki

CFG = CleanConfig.build(["lang"], ["각주"], False)
N = 20_000  # unclosed openers per page: minutes each with the old quadratic passes, well under a second now

# Unclosed markup, each as seen in broken or vandalised articles.
PATHOLOGICAL = {
    "unclosed ref": "본문 <ref>출처 ",
    "ref without >": "본문 <ref name=x ",
    "unclosed template": "본문 {{틀|",
    "template with link": "본문 {{틀|[[링크]] ",
    "unclosed link": "본문 [[링크|{{틀 ",
    "unclosed math": "본문 <math>x ",
    "unclosed nowiki": "본문 <nowiki>x ",
    "mixed": "본문 <ref>{{a|[[b|<math>c ",
}


@pytest.mark.parametrize("name", sorted(PATHOLOGICAL))
def test_unclosed_markup_cleans_in_linear_time(name):
    """Finishes (the old passes took 50 s at 8k and did not finish at 100k); the prose survives. Speed itself is
    measured by `python benchmarks/wiki_clean_pathological.py` (time at N and 10 N)."""
    text = clean_wikitext(PATHOLOGICAL[name] * N, CFG)
    assert text.count("본문") == N


@pytest.mark.parametrize("wikitext, expected", [
    ("가 <math>x 나 [[링크]] 다", "가 <math>x 나 링크 다"),  # an unclosed tag is text, as the parser shows it
    ("가 <ref name=x 나 [[링크]]", "가 <ref name=x 나 링크"),
    ("가 <ref>a</ref> 나 <ref>b 다 [[x]]", "가 나 b 다 x"),  # a closed ref goes, an unclosed one's tag goes
    ("가 {{틀 [[링크]] 다", "가 {{틀 링크 다"),
    ("{{a|{{b|c}} 다 [[x]]", "{{a| 다 x"),
    ("가 <nowiki>[[x]]</nowiki> 나 <nowiki>y", "가 [[x]] 나 <nowiki>y"),
])
def test_unclosed_markup_reads_as_before(wikitext, expected):
    assert clean_wikitext(wikitext, CFG) == expected


def test_page_over_size_budget_is_a_named_skip(tmp_path):
    xml = replace_page_text(sample_xml(), 1104, escape("한강은 서울을 지난다. " * 5000))
    dump, index = multistream(tmp_path, xml)
    m = extract_wiki(params(dump=str(dump), index=str(index), workers=2, max_page_chars=50_000),
                     tmp_path / "out", None, progress=False)
    assert m["dropped"]["too_large"] == 1 and m["pages_kept"] == 27
    assert len(m["skipped_pages"]) == 1
    assert m["skipped_pages"][0].startswith("page id 1104 (한강): ") and "max_page_chars 50000" in m["skipped_pages"][0]
    assert m["pages_kept"] + sum(m["dropped"].values()) + m["parse_errors"] == m["pages_read"]


@pytest.mark.parametrize("workers", [1, 2])
def test_page_over_time_budget_is_a_named_skip(tmp_path, workers):
    # ~5 M characters of dense markup: several seconds to clean, far over a 0.5 s budget (which an ordinary
    # page, at a few milliseconds, never reaches).
    xml = replace_page_text(sample_xml(), 1104, escape(PATHOLOGICAL["mixed"] * 200_000))
    dump, index = multistream(tmp_path, xml)
    m = extract_wiki(params(dump=str(dump), index=str(index), workers=workers, max_page_seconds=0.5,
                            max_page_chars=100_000_000), tmp_path / "out", None, progress=False)
    assert m["dropped"]["too_slow"] == 1 and m["pages_kept"] == 27
    assert m["skipped_pages"][0].startswith("page id 1104 (한강): cleaning took over extract_wiki.max_page_seconds")


def _damaged(xml: bytes, ids) -> bytes:
    for pid in ids:  # "re-encoded wrongly": the text of these pages is no longer well-formed XML
        xml = replace_page_text(xml, pid, "깨진 <텍스트 & 인코딩")
    return xml


def test_too_many_parse_errors_fail_the_stage(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.csv").write_text("earlier run\n", encoding="utf-8")
    bad = range(1101, 1116)  # 15 of 37 pages (40%)
    dump, index = multistream(tmp_path, _damaged(sample_xml(), bad))
    with pytest.raises(InputError, match=r"15 of 37 pages \(40\.5%\) failed to parse.*max_parse_error_share"):
        extract_wiki(params(dump=str(dump), index=str(index), workers=2), out, None, progress=False)
    assert (out / "train.csv").read_text(encoding="utf-8") == "earlier run\n"
    # A user who accepts the loss raises the cap.
    m = extract_wiki(params(dump=str(dump), index=str(index), workers=2, max_parse_error_share=0.5), out, None,
                     progress=False)
    assert m["parse_errors"] == 15


# ---- the process tree ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_dump(tmp_path_factory):
    """A dump whose two pages in different streams each take tens of seconds to clean, so both workers are busy."""
    tmp = tmp_path_factory.mktemp("slow")
    slow = escape(PATHOLOGICAL["mixed"] * 600_000)
    xml = replace_page_text(replace_page_text(sample_xml(), 1101, slow), 1111, slow)
    dump, index = multistream(tmp, xml)
    p = tmp / "params.yaml"
    section = params(dump=str(dump), index=str(index), workers=2, max_page_chars=100_000_000,
                     max_page_seconds=0).model_dump()
    p.write_text(yaml.safe_dump({"extract_wiki": section}, allow_unicode=True), encoding="utf-8")
    return p


def _wait_for(pred, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not pred():
        assert time.monotonic() < deadline, f"gave up after {limit:.0f} s waiting for {what}"
        time.sleep(0.1)


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_the_stage(slow_dump, tmp_path, sig):
    out_dir = tmp_path / "kowiki"
    cmd = [sys.executable, "-m", "stages.extract_wiki", "--params", str(slow_dump), "--out-dir", str(out_dir),
           "--metrics", str(tmp_path / "m.json"), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        parent = psutil.Process(proc.pid)
        _wait_for(lambda: len(parent.children()) >= 2, "two worker processes")
        workers = [c.pid for c in parent.children()]
        # Both workers busy on their slow page (not idle, not yet finished).
        _wait_for(lambda: all(psutil.Process(w).cpu_times().user > 0.5 for w in workers), "busy workers")
        os.kill(proc.pid, sig)
        rc = proc.wait(timeout=60)
        assert rc != 0
        _wait_for(lambda: not _alive(workers), f"the workers {workers} to stop after signal {sig.name}", 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _alive(workers):  # never leave a runaway behind, even when the test fails
            os.kill(pid, signal.SIGKILL)
    if sig != signal.SIGKILL:  # an orderly stop also removes the half-written output
        assert not out_dir.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".kowiki")], "temp output left behind"
