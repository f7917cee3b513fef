"""The `openai` backend against a REAL local HTTP server on 127.0.0.1 (tests/translate_server.py): faults,
retries, validation re-translations, flagging, resume after kill -9, and the API key never leaking."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest
import yaml
from params_helpers import openai_params, section_params
from translate_server import FakeLLMServer, always, sequence, sequence_for_first

from koblla.errors import KoBLLaError
from koblla.translate import run_translate
from koblla.translate.ratelimit import TokenBucket

SECRET = "sk-koblla-test-9f8e7d6c5b4a"
N_CHUNKS = 36  # unique turns in the shipped sample


@pytest.fixture(autouse=True)
def _env(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    monkeypatch.setenv("KOBLLA_TEST_KEY", SECRET)


def rows(d, name):
    return [json.loads(x) for x in (d / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_happy_path_matches_reference_and_rerun_makes_no_requests(tmp_path):
    with FakeLLMServer() as srv:
        m = run_translate(openai_params(srv), tmp_path / "out", tmp_path / "tm", tmp_path / "m.json")
        assert srv.requests == N_CHUNKS and m["requests"] == N_CHUNKS and m["cache_hits"] == 0
        assert srv.auth_headers == {f"Bearer {SECRET}"}
        assert srv.max_in_flight <= 4
        assert m["tokens_in"] > 0 and m["tokens_out"] > 0
        srv.reset_counts()
        m2 = run_translate(openai_params(srv), tmp_path / "out2", tmp_path / "tm", None)
        assert srv.requests == 0 and m2["cache_hit_rate"] == 1.0
    # Same text as the shipped reference translations served by the memory backend.
    ref = run_translate(section_params("translate"), tmp_path / "ref", tmp_path / "tm_ref", None)
    assert ref["items_written"] == m["items_written"] == 14
    assert rows(tmp_path / "out", "kolima") == rows(tmp_path / "ref", "kolima")


def test_transport_faults_are_retried_and_retry_after_is_honoured(tmp_path):
    plan = sequence("429", "500", "timeout", "garbage")
    with FakeLLMServer(plan=plan, hang_s=1.0, retry_after="0.3") as srv:
        m = run_translate(openai_params(srv, openai={"concurrency": 1}), tmp_path / "o", tmp_path / "tm", None)
        (t429, text), *later = srv.arrivals
        gap_after_429 = next(t for t, x in later if x == text) - t429
    assert m["items_written"] == 14 and m["flagged_chunks"] == 0
    assert m["transport_errors"] == {"http_429": 1, "http_500": 1, "timeout": 1, "bad_json": 1}
    assert m["requests"] == N_CHUNKS + 4 and m["retries"] == 4
    assert gap_after_429 >= 0.3, "the retry after a 429 waits at least Retry-After"


def test_bad_outputs_are_retranslated(tmp_path):
    # Every bad output goes to the same chunk (the first one sent, long enough for the length checks), which
    # needs 5 attempts.
    plan = sequence_for_first("empty", "english", "wrong_register", "placeholders")
    with FakeLLMServer(plan=plan) as srv:
        params = openai_params(srv, max_attempts=5, openai={"concurrency": 1})
        m = run_translate(params, tmp_path / "o", tmp_path / "tm", None)
    assert m["items_written"] == 14 and m["flagged_chunks"] == 0
    rejected = m["rejected_attempts_by_reason"]
    assert rejected["empty"] == 1 and rejected["wrong_register"] == 1 and rejected["placeholders"] == 1
    assert rejected["wrong_language"] == 1 and rejected["copied_source"] == 1
    assert m["requests"] == N_CHUNKS + 4


def test_persistent_wrong_register_is_flagged_and_left_out(tmp_path):
    with FakeLLMServer(plan=always("wrong_register")) as srv:
        m = run_translate(openai_params(srv, max_attempts=2, limit=2), tmp_path / "o", tmp_path / "tm", None)
    assert m["items"] == 2 and m["items_written"] == 0 and m["items_flagged"] == 2
    assert m["failures_by_reason"] == {"wrong_register": 4} and m["requests"] == 8
    assert (tmp_path / "tm" / "memory.jsonl").read_text() == "", "rejected text never enters the memory"
    side = rows(tmp_path / "o", "side_by_side")
    assert side[0]["flags"] == {"0": ["wrong_register"], "1": ["wrong_register"]} and side[0]["ko"] == [None, None]
    assert rows(tmp_path / "o", "kolima") == []


def test_retries_exhausted_flags_backend_error(tmp_path):
    with FakeLLMServer(plan=always("500")) as srv:
        m = run_translate(openai_params(srv, limit=1, openai={"max_retries": 2}), tmp_path / "o", tmp_path / "tm", None)
    assert m["failures_by_reason"] == {"backend_error": 2} and m["requests"] == 6
    assert m["transport_errors"] == {"http_500": 6}


def test_rejected_key_stops_with_clear_message(tmp_path):
    class Unauthorized(FakeLLMServer):
        def _respond(self, n, body):
            return 401, {}, b'{"error": "bad key"}'

    with Unauthorized() as srv:
        with pytest.raises(KoBLLaError, match="(?s)401.*KOBLLA_TEST_KEY") as e:
            run_translate(openai_params(srv), tmp_path / "o", tmp_path / "tm", None)
    assert SECRET not in str(e.value)


def test_key_config_errors(tmp_path, monkeypatch):
    with FakeLLMServer() as srv:
        monkeypatch.delenv("KOBLLA_TEST_KEY")
        with pytest.raises(KoBLLaError, match="KOBLLA_TEST_KEY.*not set"):
            run_translate(openai_params(srv), tmp_path / "o", tmp_path / "tm", None)
        p = openai_params(srv)
        p.openai.api_key_env = SECRET  # a key pasted where the variable NAME belongs
        with pytest.raises(KoBLLaError, match="NAME of an environment variable") as e:
            run_translate(p, tmp_path / "o", tmp_path / "tm", None)
        assert SECRET not in str(e.value) and srv.requests == 0


def test_token_bucket_waits_once_empty():
    import asyncio

    async def go():
        b = TokenBucket(per_minute=60)  # 1 unit per second once the burst is used
        await b.acquire(60)
        t0 = time.monotonic()
        await b.acquire(1)
        return time.monotonic() - t0

    assert asyncio.run(go()) >= 0.9


def _write_params(repo_root, path, srv, **translate):
    data = yaml.safe_load((repo_root / "params.yaml").read_text(encoding="utf-8"))
    t = data["translate"]
    t.update(backend="openai", model="fake-model", seed_memory=[], **translate)
    t["openai"].update(base_url=srv.base_url, api_key_env="KOBLLA_TEST_KEY", timeout_s=2, backoff_base_s=0.01,
                       backoff_max_s=0.05, concurrency=2)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _stage(repo_root, params, tmp_path, *extra, **popen):
    cmd = [sys.executable, "-m", "stages.translate", "--params", str(params), "--out-dir", str(tmp_path / "out"),
           "--memory", str(tmp_path / "tm"), "--metrics", str(tmp_path / "metrics.json"), *extra]
    env = dict(os.environ, KOBLLA_TEST_KEY=SECRET)
    return subprocess.Popen(cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def test_kill9_then_rerun_translates_only_missing_and_key_never_leaks(repo_root, tmp_path):
    with FakeLLMServer(latency_s=0.1) as srv:
        params = _write_params(repo_root, tmp_path / "params.yaml", srv)
        proc = _stage(repo_root, params, tmp_path, "-v")
        mem = tmp_path / "tm" / "memory.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not mem.exists() or mem.read_text().count("\n") < 8):
            time.sleep(0.05)
        helpers = psutil.Process(proc.pid).children(recursive=True)  # the validator process
        os.kill(proc.pid, signal.SIGKILL)
        killed_logs = "".join(proc.communicate(timeout=60))
        before = mem.read_text().count("\n")
        assert helpers, "validation runs in a worker process"
        _, alive = psutil.wait_procs(helpers, timeout=10)
        assert not alive, "the validator exits when the stage process is killed"
        assert 8 <= before < N_CHUNKS, "killed mid-run"
        srv.reset_counts()
        proc = _stage(repo_root, params, tmp_path, "-v")
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert srv.requests == N_CHUNKS - before, "only the missing chunks are requested"
    recs = [json.loads(x) for x in mem.read_text().splitlines()]
    assert len(recs) == N_CHUNKS and len({r["key"] for r in recs}) == N_CHUNKS, "no duplicates, nothing lost"
    ids = Counter(r["id"] for r in rows(tmp_path / "out", "kolima"))
    assert len(ids) == 14 and set(ids.values()) == {1}
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["cache_hits"] == before
    # The key went to the server, and nowhere else: not in outputs, memory, metrics or logs.
    for f in [*tmp_path.rglob("*")]:
        if f.is_file():
            assert SECRET not in f.read_text(encoding="utf-8", errors="replace"), f
    assert SECRET not in out + err + killed_logs


def test_validator_process_death_is_a_clear_error_and_the_next_run_recovers(tmp_path):
    def kill_validator_then_ok(n, body):
        if n == 1:  # the validator: the spawned worker (not multiprocessing's resource tracker)
            for child in psutil.Process().children():
                if "spawn_main" in " ".join(child.cmdline()):
                    child.kill()
                    child.wait(10)
        return "ok"

    with FakeLLMServer(plan=kill_validator_then_ok) as srv:
        with pytest.raises(KoBLLaError, match="validator process died.*rerun the stage"):
            run_translate(openai_params(srv, limit=2), tmp_path / "o", tmp_path / "tm", None)
        m = run_translate(openai_params(srv, limit=2), tmp_path / "o", tmp_path / "tm", None)
    assert m["items_written"] == 2 and m["flagged_chunks"] == 0


def test_long_messages_are_split_translated_and_rejoined(tmp_path):
    with FakeLLMServer() as srv:  # unknown chunks get synthetic Korean that keeps every placeholder
        m = run_translate(openai_params(srv, chunk_tokens=64, limit=4), tmp_path / "o", tmp_path / "tm", None)
    assert m["chunks"] > m["turns"] and m["items_written"] == 4 and m["flagged_chunks"] == 0
    side = rows(tmp_path / "o", "side_by_side")
    for conv in side:
        for en, ko in zip(conv["en"], conv["ko"], strict=True):
            assert en.count("```") == ko.count("```")
            for line in en.splitlines():
                if line.startswith(("items = ", "git reset", "$$")):
                    assert line in ko, line  # code and LaTeX come back verbatim across chunk boundaries


def test_retries_get_free_slots_before_first_tries():
    import asyncio

    from koblla.translate.ratelimit import PrioritySlots

    async def go():
        slots, order = PrioritySlots(1), []
        await slots.acquire()

        async def want(name, prio):
            async with slots.slot(prio):
                order.append(name)

        tasks = [asyncio.create_task(want(n, p)) for n, p in [("first-a", 1), ("first-b", 1), ("retry", 0)]]
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(go()) == ["retry", "first-a", "first-b"]
