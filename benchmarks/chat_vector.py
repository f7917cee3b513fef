"""Benchmark the chat_vector stage against mergekit, the seed's whole-model approach and the I/O floor.

python benchmarks/chat_vector.py            (from the repo root; no arguments)

Inputs: three Llama-3.2-1B-shaped bf16 checkpoints (base, instruct, korean; 3 x 2.8 GiB) made by
../shared/bench/make_models.py into .bench/chat_vector/models/ if absent. Each contender runs as its own child
process, timed by wall clock, with peak RSS from wait4's ru_maxrss (what GNU `time -v` reports: every resident
page, mapped file pages included). Linux starts a child's ru_maxrss at its parent's RSS at fork, so this script
imports nothing heavy (the float64 reference check runs in a child too):
  ours      python -m stages.chat_vector (ratio 1, special-token rows as in params.yaml)
  mergekit  mergekit-yaml, task_arithmetic, korean weight 1 + instruct weight 1, base as base_model, in its own
            venv .bench/mergekit-venv (mergekit==0.1.5 with torch==2.13.0, installed on first run)
  seed      the seed's approach: load all three models whole, korean + (instruct - base), save
  io_floor  read the three inputs and write one output of the same size, in 8 MiB blocks, nothing else
Ours and the floor run 3 times each (alternating; the median run is reported), the slow two once.
The inputs are read once first so every contender starts from a warm page cache. Ours is checked against a float64
reference (korean + (instruct - base), rounded to bf16; special rows from instruct). The machine is shared: the
load average before and after is printed, and figures are from one run. The last line is one JSON object.
Set KOBLLA_BENCH_KEEP=1 to keep our output; the 8.4 GB of inputs stay in .bench/chat_vector/models for the
next run (delete them by hand; regenerating takes ~2 minutes).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".bench" / "chat_vector"  # inputs, outputs, logs
MODELS = BENCH / "models"
MAKE_MODELS = ROOT.parent / "shared" / "bench" / "make_models.py"
MERGEKIT_VENV = ROOT / ".bench" / "mergekit-venv"
# The rows ours copies from instruct (params.yaml's, as the stage reads them); the reference copies the same.
SPECIAL = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["chat_vector"]["special_token_ids"]
PY = sys.executable
REPEATS = 3  # ours and the I/O floor (a few seconds each); mergekit and the seed approach run once


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_models() -> None:
    if not all((MODELS / n / "model.safetensors.index.json").is_file() for n in ("base", "instruct", "korean")):
        if not MAKE_MODELS.is_file():
            sys.exit(f"{MAKE_MODELS} is absent: the benchmark needs ../shared/bench/make_models.py")
        log(f"generating 3 x 2.8 GiB checkpoints into {MODELS} (a few minutes)")
        subprocess.run([PY, str(MAKE_MODELS), str(MODELS)], check=True)
    for n in ("base", "instruct", "korean"):  # the stage carries a tokenizer over; these stand-ins are enough
        d = MODELS / n
        if not (d / "tokenizer.json").is_file():
            (d / "tokenizer.json").write_text("{}")
            (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))


def ensure_mergekit() -> str | None:
    """Path of mergekit-yaml in its own venv, or None (the reason is logged) when it cannot be installed."""
    exe = MERGEKIT_VENV / "bin" / "mergekit-yaml"
    if exe.is_file():
        return str(exe)
    log("installing mergekit==0.1.5 (torch==2.13.0 pinned: the local CPU wheel) into .bench/mergekit-venv")
    try:
        subprocess.run([PY, "-m", "venv", "--clear", str(MERGEKIT_VENV)], check=True)
        r = subprocess.run([str(MERGEKIT_VENV / "bin" / "pip"), "install", "-q", "torch==2.13.0", "mergekit==0.1.5"],
                           capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        log(f"mergekit venv failed: {e}")
        return None
    if r.returncode != 0 or not exe.is_file():
        log(f"mergekit install failed:\n{r.stderr[-3000:]}")
        return None
    return str(exe)


def measure(name: str, cmd: list[str], env: dict | None = None) -> dict:
    """Run `cmd` as a child; wall seconds and its peak RSS (wait4 ru_maxrss, KiB on Linux)."""
    out_log = BENCH / f"{name}.log"
    with open(out_log, "w") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    res = {"seconds": round(wall, 2), "peak_rss_mb": round(ru.ru_maxrss / 1024, 1), "exit": p.returncode,
           "cpu_seconds": round(ru.ru_utime + ru.ru_stime, 2)}
    if p.returncode != 0:
        res["error"] = out_log.read_text()[-2000:]
    log(f"{name}: {res['seconds']} s wall, {res['cpu_seconds']} s CPU, peak RSS {res['peak_rss_mb']} MB"
        + (f", exit {p.returncode} (see {out_log})" if p.returncode else ""))
    return res


def input_files() -> list[Path]:
    return sorted(p for n in ("korean", "instruct", "base") for p in (MODELS / n).glob("*.safetensors"))


IO_FLOOR = textwrap.dedent("""
    import sys
    files, out, nbytes = sys.argv[1].split(","), sys.argv[2], int(sys.argv[3])
    buf = bytearray(8 << 20)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    with open(out, "wb", buffering=0) as fh:
        left = nbytes
        while left:
            left -= fh.write(memoryview(buf)[:min(left, len(buf))])
""")

SEED = textwrap.dedent("""
    import sys
    from safetensors.torch import load_file, save_file
    from pathlib import Path
    def load(d):
        sd = {}
        for f in sorted(Path(d).glob("*.safetensors")):
            sd.update(load_file(f))
        return sd
    korean, base, instruct, out = (sys.argv[i] for i in range(1, 5))
    k, b, i = load(korean), load(base), load(instruct)
    for n in k:
        k[n] += i[n] - b[n]
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file(k, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})
""")


REFERENCE = textwrap.dedent("""
    # max |ours - bf16(float64 korean + (instruct - base))| over every element (special rows: instruct's)
    import json, sys
    from pathlib import Path
    import torch
    from safetensors import safe_open
    models, out_dir, special = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
    def opener(d):
        index = json.loads((d / "model.safetensors.index.json").read_text())["weight_map"]
        handles = {f: safe_open(str(d / f), "pt") for f in set(index.values())}
        return lambda n: handles[index[n]].get_slice(n)
    k, b, i, o = (opener(d) for d in (models / "korean", models / "base", models / "instruct", out_dir))
    worst = 0.0
    for n in json.loads((models / "korean" / "model.safetensors.index.json").read_text())["weight_map"]:
        rows = k(n).get_shape()[0]
        for r0 in range(0, rows, 4096):
            r1 = min(rows, r0 + 4096)
            kk, bb, ii, oo = (f(n)[r0:r1] for f in (k, b, i, o))
            ref = (kk.double() + (ii.double() - bb.double())).to(torch.bfloat16)
            if n.endswith(("embed_tokens.weight", "lm_head.weight")):
                for s in special:
                    if r0 <= s < r1:
                        ref[s - r0] = ii[s - r0]
            worst = max(worst, float((oo.double() - ref.double()).abs().max()))
    print(worst)
""")


def max_abs_diff_vs_reference(out_dir: Path) -> float:
    """Run in a child so this process stays small (a child's ru_maxrss starts at its parent's RSS at fork)."""
    r = subprocess.run([PY, "-c", REFERENCE, str(MODELS), str(out_dir), json.dumps(SPECIAL)], capture_output=True,
                       text=True, check=True)
    return float(r.stdout.strip().splitlines()[-1])


def main() -> None:
    BENCH.mkdir(parents=True, exist_ok=True)
    ensure_models()
    mergekit = ensure_mergekit()
    files = input_files()
    out_bytes = sum(json.loads((MODELS / "korean" / "model.safetensors.index.json").read_text())["metadata"]
                    .values())
    # numba compiles the fused kernel once per machine (a few seconds, cached on disk): not part of a run's cost
    subprocess.run([PY, "-c", "import numpy as np; from koblla.chat_vector.kernel import merge_block; "
                    "a = np.zeros(8, np.uint8); merge_block(a, a, a, a.copy(), 1.0, 'BF16')"], cwd=ROOT, check=True)
    load_before = os.getloadavg()
    log(f"load average before: {load_before}; warming the page cache with the {len(files)} input files")
    measure("warm_cache", [PY, "-c", IO_FLOOR, ",".join(map(str, files)), "/dev/null", "0"])

    outs = {n: BENCH / f"out_{n}" for n in ("floor", "ours", "seed", "mergekit")}
    for d in outs.values():
        shutil.rmtree(d, ignore_errors=True)
    res, runs = {}, {"io_floor": [], "ours": []}
    for rep in range(REPEATS):  # the two fast ones alternate, REPEATS times each; the median run counts
        outs["floor"].mkdir()
        runs["io_floor"].append(measure(f"io_floor_{rep}", [PY, "-c", IO_FLOOR, ",".join(map(str, files)),
                                                           str(outs["floor"] / "out.bin"), str(out_bytes)]))
        shutil.rmtree(outs["floor"])
        shutil.rmtree(outs["ours"], ignore_errors=True)
        runs["ours"].append(measure(f"ours_{rep}", [PY, "-m", "stages.chat_vector", "--params", "params.yaml",
                                                    "--korean", str(MODELS / "korean"), "--base", str(MODELS / "base"),
                                                    "--instruct", str(MODELS / "instruct"), "--out", str(outs["ours"]),
                                                    "--metrics", str(BENCH / "ours_metrics.json")]))
    for name, rs in runs.items():
        res[name] = sorted(rs, key=lambda r: r["seconds"])[len(rs) // 2]
    diff = max_abs_diff_vs_reference(outs["ours"]) if res["ours"]["exit"] == 0 else None
    log(f"max |ours - float64 reference| = {diff}")
    res["seed"] = measure("seed", [PY, "-c", SEED, str(MODELS / "korean"), str(MODELS / "base"),
                                   str(MODELS / "instruct"), str(outs["seed"])])
    shutil.rmtree(outs["seed"], ignore_errors=True)
    if mergekit:
        cfg = BENCH / "mergekit_task_arithmetic.yml"
        cfg.write_text(textwrap.dedent(f"""\
            merge_method: task_arithmetic
            base_model: {MODELS / 'base'}
            models:
              - model: {MODELS / 'korean'}
                parameters: {{weight: 1.0}}
              - model: {MODELS / 'instruct'}
                parameters: {{weight: 1.0}}
            parameters:
              normalize: false
            dtype: bfloat16
            """))
        res["mergekit"] = measure("mergekit", [mergekit, str(cfg), str(outs["mergekit"]), "--lazy-unpickle",
                                               "--no-copy-tokenizer"], env={"HF_HUB_OFFLINE": "1"})
        shutil.rmtree(outs["mergekit"], ignore_errors=True)
    else:
        res["mergekit"] = {"seconds": None, "peak_rss_mb": None, "error": "mergekit==0.1.5 could not be installed"}
    if not os.environ.get("KOBLLA_BENCH_KEEP"):
        shutil.rmtree(outs["ours"], ignore_errors=True)
    load_after = os.getloadavg()
    log(f"load average after: {load_after}")
    ours, mk, floor = res["ours"]["seconds"], res["mergekit"]["seconds"], res["io_floor"]["seconds"]
    summary = {
        "speedup_vs_mergekit": round(mk / ours, 2) if mk and res["mergekit"].get("exit") == 0 else None,
        "ratio_to_io_floor": round(ours / floor, 2),
        "peak_rss_mb": res["ours"]["peak_rss_mb"],
        "seed_peak_rss_mb": res["seed"]["peak_rss_mb"],
        "mergekit_peak_rss_mb": res["mergekit"]["peak_rss_mb"],
        "max_abs_diff_vs_reference": diff,
        "ours_seconds": ours, "mergekit_seconds": mk, "seed_seconds": res["seed"]["seconds"], "io_floor_seconds": floor,
        "ours_cpu_seconds": res["ours"]["cpu_seconds"], "mergekit_cpu_seconds": res["mergekit"].get("cpu_seconds"),
        "seed_cpu_seconds": res["seed"]["cpu_seconds"], "io_floor_cpu_seconds": res["io_floor"]["cpu_seconds"],
        "input_gib": round(sum(f.stat().st_size for f in files) / 2**30, 2), "output_gib": round(out_bytes / 2**30, 2),
        "ours_runs_seconds": [r["seconds"] for r in runs["ours"]],
        "io_floor_runs_seconds": [r["seconds"] for r in runs["io_floor"]],
        "load_avg_before": round(load_before[0], 2), "load_avg_after": round(load_after[0], 2), "cpus": os.cpu_count(),
        "errors": {k: v["error"][-300:] for k, v in res.items() if v.get("error")},
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
