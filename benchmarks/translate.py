"""Benchmark the translate stage's openai backend and its register classifier.

python benchmarks/translate.py

1. Throughput: the real stage (`python -m stages.translate`, a subprocess) against the local OpenAI-compatible
   server of tests/translate_server.py on 127.0.0.1 with 200 ms latency per request and injected faults (10% 429
   with Retry-After: 1, 5% 500, 2% hung requests that the client times out after 0.5 s), 16 requests in flight.
   Ideal = concurrency / latency = 80 requests/s. Reported: HTTP requests completed per second (every outcome;
   a timed-out one counts once, at its timeout) / ideal, and accepted translations per second / ideal (goodput,
   which 17% failed requests bound to about 0.8). Also: the same ratio over the steady state (until the last first
   attempt is sent, before the batch drains), the server's mean service time and the share of slots kept busy.
2. A second run on the same memory: requests it makes (target 0).
3. kill -9 mid-run, rerun: conversations lost or duplicated in the outputs, duplicate memory keys (target 0).
4. Register classifier on ../shared/data/korean_smile_style (formal vs informal columns of 3470 parallel pairs):
   accuracy per class (target >= 0.95); null when the shared data is absent.
5. Quality gate. faulty_replies_accepted (target 0): the stage (max_attempts 1) against the same server answering
   every request with the next fault class of tests/translate_server.py FAULT_MODES that applies to its text
   (commentary in either language, finish_reason length, a thinking model's empty reply, a reply cut after two of
   three sentences, Chinese, Japanese, mixed script, invented sentences, reordered or rewritten code, untranslated,
   wrong register, lost placeholders, empty) over the shipped sample and 300 bench conversations; a faulty reply
   counts as accepted when its chunk reached the memory without ever getting a correct reply.
   clean_replies_rejected (target < 0.02): correct translations rejected, over the 54 human reference
   translations (assets/lima/translation_memory.jsonl, through the same restore + check path) and the correct
   replies of run 1.
Work files go to .bench/translate/ (gitignored). The last line of output is one JSON object.
"""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from translate_server import FAULT_MODES, FakeLLMServer, fault_cycle, random_faults  # noqa: E402

WORK = REPO / ".bench" / "translate"
SMILE = REPO.parent / "shared" / "data" / "korean_smile_style" / "smilestyle_dataset.tsv"
N_CONVERSATIONS = 1000  # x 2 turns = 2000 chunks: ~30 s at the ideal rate, so the retry tail stays small
# A hung request holds its slot until the client timeout: 0.5 s (2.5x the latency) keeps that cost bounded.
CONCURRENCY, LATENCY_S, CLIENT_TIMEOUT_S = 16, 0.2, 0.5
FAULTS = {"429": 0.10, "500": 0.05, "timeout": 0.02}
KEY_ENV = "KOBLLA_BENCH_KEY"

_TOPICS = ["a Python list", "a git branch", "a sourdough starter", "a bike chain", "a SQL index", "a tomato plant",
           "a job interview", "a Linux server", "a watercolor painting", "a marathon plan", "a JSON file", "a tent"]
_VERBS = ["clean up", "speed up", "fix", "set up", "understand", "explain to a friend", "keep healthy", "test"]


def make_input(path: Path, n: int, seed: int = 0) -> None:
    """LIMA-schema conversations in English with inline code, URLs and some fenced code blocks."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            topic, verb = rng.choice(_TOPICS), rng.choice(_VERBS)
            q = (f"Question {i}: how do I {verb} {topic}? I tried the obvious thing with `step_{i}` and it did not "
                 f"work the way the guide at https://example.org/guide/{i} says it should.")
            parts = [f"Good question number {i}. To {verb} {topic}, start small and check each change before the next."]
            for k in range(rng.randint(2, 5)):
                parts.append(f"Step {k + 1}: look at `item_{k}` first, because most problems with {topic} start "
                             f"there, and write down what you changed so that you can undo it later.")
            if rng.random() < 0.3:
                parts.append(f"```python\nfor x in range({i}):\n    print(x)\n```")
            f.write(json.dumps({"conversations": [q, "\n\n".join(parts)], "source": "bench"}) + "\n")


def write_params(path: Path, input_path: Path, base_url: str, **extra) -> None:
    import yaml

    t = {
        "input": str(input_path), "backend": "openai", "model": "bench-model", "seed_memory": [],
        "prompt_version": "v2", **extra,
        "openai": {"base_url": base_url, "api_key_env": KEY_ENV, "concurrency": CONCURRENCY,
                   "timeout_s": CLIENT_TIMEOUT_S, "max_retries": 8, "backoff_base_s": 0.2, "backoff_max_s": 2.0},
    }
    path.write_text(yaml.safe_dump({"translate": t}), encoding="utf-8")


def stage(params: Path, run: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "stages.translate", "--params", str(params), "--out-dir", str(WORK / run / "out"),
           "--memory", str(WORK / run / "tm"), "--metrics", str(WORK / run / "metrics.json")]
    env = dict(os.environ, **{KEY_ENV: "bench-secret"}, TQDM_DISABLE="1")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"stage failed ({proc.returncode}):\n{err[-3000:]}")
    print("   " + out.strip().splitlines()[-1])


def throughput(srv: FakeLLMServer, metrics: dict) -> dict:
    start = min(t for t, _ in srv.arrivals)
    end = max(t for t, mode in srv.completions if mode != "timeout")
    seconds = end - start
    ideal = CONCURRENCY / LATENCY_S
    ok = sum(mode == "ok" for _, mode in srv.completions)
    # Steady state: until the last first attempt is sent; after it the batch drains (retries only, fewer than 16
    # requests left), which any finite run has and which says nothing about keeping 16 in flight.
    first_try: dict[str, float] = {}
    for t, text in srv.arrivals:
        first_try.setdefault(text, t)
    steady_end = max(first_try.values())
    done = sum(t <= steady_end for t, mode in srv.completions if mode != "timeout")
    hung = [t for (t, _), mode in zip(srv.arrivals, srv.modes, strict=True) if mode == "timeout"]
    done += sum(t + CLIENT_TIMEOUT_S <= steady_end for t in hung)
    return {
        "backend_seconds": round(seconds, 2),
        "requests": metrics["requests"],
        "requests_per_s": round(metrics["requests"] / seconds, 2),
        "ideal_requests_per_s": ideal,
        "throughput_ratio_to_ideal": round(metrics["requests"] / seconds / ideal, 4),
        "goodput_ratio_to_ideal": round(ok / seconds / ideal, 4),
        "steady_state_seconds": round(steady_end - start, 2),
        "steady_state_ratio_to_ideal": round(done / (steady_end - start) / ideal, 4),
        # Where the time goes: the server's own time per answered request (200 ms + scheduling on a busy
        # machine), and the share of the 16 slots kept busy (answered requests + timeouts held to the client timeout).
        "server_mean_service_s": round(sum(srv.service_times) / len(srv.service_times), 4),
        "slot_utilisation": round((sum(srv.service_times) + Counter(srv.modes)["timeout"] * CLIENT_TIMEOUT_S)
                                  / (CONCURRENCY * seconds), 4),
        "server_modes": dict(Counter(srv.modes)),
        "max_in_flight": srv.max_in_flight,
    }


def check_outputs(run: str, n_items: int) -> tuple[int, int, int]:
    """(lost conversations, duplicated conversations, duplicate memory keys)."""
    ids = Counter(json.loads(x)["id"] for x in (WORK / run / "out" / "kolima.jsonl").read_text().splitlines())
    keys = Counter(json.loads(x)["key"] for x in (WORK / run / "tm" / "memory.jsonl").read_text().splitlines())
    expected = {f"lima_{i}" for i in range(n_items)}
    return (len(expected - set(ids)), sum(c - 1 for c in ids.values()), sum(c - 1 for c in keys.values()))


def register_accuracy() -> dict:
    if not SMILE.is_file():
        print(f"   {SMILE} absent: register accuracy not measured")
        return {"register_accuracy_formal": None, "register_accuracy_informal": None, "register_pairs": 0}
    from koblla.text.register import classify_formality, kiwi

    kiwi()
    with open(SMILE, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    head = rows[0]
    fi, ii = head.index("formal"), head.index("informal")
    pairs = [(r[fi], r[ii]) for r in rows[1:] if len(r) > ii and r[fi].strip() and r[ii].strip()]
    t0 = time.monotonic()
    formal = sum(classify_formality(a) == "formal" for a, _ in pairs) / len(pairs)
    informal = sum(classify_formality(b) == "informal" for _, b in pairs) / len(pairs)
    return {"register_accuracy_formal": round(formal, 4), "register_accuracy_informal": round(informal, 4),
            "register_pairs": len(pairs), "register_seconds": round(time.monotonic() - t0, 1)}


def reference_rejections() -> tuple[int, int, dict]:
    """(rejected, total, reasons) of the human reference translations through judge() (restore + every check)."""
    from koblla.params import load_section
    from koblla.text.verbatim import mask, mask_with
    from koblla.translate.backends.base import ChunkJob, judge
    from koblla.translate.validate import Limits

    limits = Limits.from_params(load_section("translate", REPO / "params.yaml"))
    rejected, total, reasons = 0, 0, Counter()
    for line in (REPO / "assets" / "lima" / "translation_memory.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        m = mask(rec["source"])
        job = ChunkJob(rec["key"], rec["source"], rec["register"], m, "reference")
        text, why = judge(job, mask_with(rec["translation"], m.spans), limits, "stop")
        total += 1
        if text is None:
            rejected += 1
            reasons.update(why)
    return rejected, total, dict(reasons)


def quality_gate(result: dict) -> None:
    """Step 5: a fault mix through the real stage, and correct translations through the gate."""
    inp = WORK / "gate_input.jsonl"
    make_input(inp, 300, seed=7)
    with open(inp, "a", encoding="utf-8") as f:
        f.write((REPO / "assets" / "lima" / "lima_sample.jsonl").read_text(encoding="utf-8"))
    with FakeLLMServer(plan=fault_cycle()) as srv:
        params = WORK / "gate_params.yaml"
        write_params(params, inp, srv.base_url, max_attempts=1)
        finish(stage(params, "gate"))
        sent = list(srv.sent)
    metrics = json.loads((WORK / "gate" / "metrics.json").read_text())
    got_ok = {src for mode, src, _ in sent if mode == "ok"}
    from koblla.text.verbatim import mask

    mem = [json.loads(x) for x in (WORK / "gate" / "tm" / "memory.jsonl").read_text(encoding="utf-8").splitlines()]
    accepted_faulty = [r for r in mem if mask(r["source"]).text not in got_ok]
    faulty_sent = Counter(mode for mode, _, _ in sent if mode != "ok")
    missing = sorted(set(FAULT_MODES) - set(faulty_sent))
    assert not missing, f"fault classes never sent: {missing}"
    ref_rej, ref_total, ref_reasons = reference_rejections()
    run_a = json.loads((WORK / "a" / "metrics.json").read_text())
    ok_a = result["server_modes"].get("ok", 0)
    rej_a = sum(run_a["rejected_attempts_by_reason"].values())
    result.update(
        faulty_replies_sent=sum(faulty_sent.values()), faulty_replies_by_class=dict(sorted(faulty_sent.items())),
        faulty_replies_accepted=len(accepted_faulty),
        faulty_rejections_by_reason=metrics["rejected_attempts_by_reason"],
        clean_reference_rejected=ref_rej, clean_reference_total=ref_total, clean_reference_reasons=ref_reasons,
        clean_run1_rejected=rej_a, clean_run1_total=ok_a,
        clean_replies_rejected=round((ref_rej + rej_a) / (ref_total + ok_a), 4),
    )
    for r in accepted_faulty[:5]:
        print(f"   ACCEPTED FAULTY: {r['source'][:70]!r} -> {r['translation'][:70]!r}")
    print(f"   faulty replies: {sum(faulty_sent.values())} sent over {len(faulty_sent)} classes, "
          f"{len(accepted_faulty)} accepted; clean replies rejected: reference {ref_rej}/{ref_total}, "
          f"run 1 {rej_a}/{ok_a}")


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    inp = WORK / "lima_bench.jsonl"
    make_input(inp, N_CONVERSATIONS)
    n_chunks = 2 * N_CONVERSATIONS
    result: dict = {"conversations": N_CONVERSATIONS, "chunks": n_chunks, "concurrency": CONCURRENCY,
                    "latency_s": LATENCY_S, "faults": FAULTS, "client_timeout_s": CLIENT_TIMEOUT_S,
                    "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    plan = random_faults(FAULTS, seed=1)
    with FakeLLMServer(plan=plan, latency_s=LATENCY_S, hang_s=3.0, retry_after="1") as srv:
        params = WORK / "params.yaml"
        write_params(params, inp, srv.base_url)

        print(f"1. throughput: {n_chunks} chunks, {CONCURRENCY} in flight, {LATENCY_S * 1000:.0f} ms latency, "
              f"faults {FAULTS}")
        t0 = time.monotonic()
        finish(stage(params, "a"))
        wall = time.monotonic() - t0
        metrics = json.loads((WORK / "a" / "metrics.json").read_text())
        result.update(throughput(srv, metrics))
        result["stage_wall_seconds"] = round(wall, 1)
        result["first_run_failures"] = metrics["failures_by_reason"]
        print(f"   {result['requests']} requests in {result['backend_seconds']} s = {result['requests_per_s']}/s "
              f"(ideal {CONCURRENCY / LATENCY_S:.0f}/s): ratio {result['throughput_ratio_to_ideal']}, goodput ratio "
              f"{result['goodput_ratio_to_ideal']}; max in flight {srv.max_in_flight}")

        print("2. rerun on the same memory")
        srv.reset_counts()
        finish(stage(params, "a"))
        result["rerun_requests"] = srv.requests

        print("3. kill -9 mid-run, then rerun")
        srv.reset_counts()
        proc = stage(params, "b")
        mem = WORK / "b" / "tm" / "memory.jsonl"
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and (not mem.exists() or mem.read_text().count("\n") < 0.4 * n_chunks):
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        before = mem.read_text(encoding="utf-8", errors="replace").count("\n")
        srv.reset_counts()
        finish(stage(params, "b"))
        resumed = json.loads((WORK / "b" / "metrics.json").read_text())
        lost, dup, dup_keys = check_outputs("b", N_CONVERSATIONS)
        result.update(killed_after_records=before, resumed_cache_hits=resumed["cache_hits"],
                      resumed_translated=resumed["translated_now"], lost_items=lost, duplicated_items=dup,
                      duplicated_memory_keys=dup_keys, resumed_failures=resumed["failures_by_reason"])
        print(f"   killed with {before}/{n_chunks} chunks in memory; rerun served {resumed['cache_hits']} from memory "
              f"and translated {resumed['translated_now']}; lost {lost}, duplicated {dup}, duplicate keys {dup_keys}")

    print("4. register classifier on korean_smile_style (formal vs informal)")
    result.update(register_accuracy())
    print(f"   formal {result['register_accuracy_formal']}, informal {result['register_accuracy_informal']}")
    print("5. quality gate: a fault mix covering every class, and correct translations")
    quality_gate(result)
    result["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
