"""Benchmark the extract_wiki stage against wikiextractor 3.1.0 and the seed's approach, on real Wikipedia XML.

python benchmarks/extract_wiki.py

Run from the repo root with no arguments (about 5 minutes on 2 cores). It needs ../shared (the real English dump
sample and make_dump.py) and PyPI access the first time. It creates, under .bench/extract_wiki/ (gitignored):
- inputs made by ../shared/bench/make_dump.py from enwiki-...-shortened.bz2 (206 real pages, 6.09 MB of XML):
  10 copies (60.9 MB of XML) single-stream and --multistream, and 40 copies (243.6 MB) --multistream for the
  memory-growth check;
- a separate venv with wikiextractor==3.1.0, xmltodict==1.0.4 and wikitextparser==3.0.0 (they stay out of the
  project's venv); the seed approach is a script run in that venv: the whole XML through xmltodict, then
  wikitextparser's plain_text() per article, one process, one file per article (what the seed's scripts did).
Peak RSS is the largest sum of RSS over the process and all its children, polled every 50 ms with psutil (forked
workers share pages, so the sum overstates a little). Timings are wall-clock on a shared machine: noisy.
The last line of output is one JSON object with the figures.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SRC = SHARED / "data" / "wiki_dump_samples" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
MAKE_DUMP = SHARED / "bench" / "make_dump.py"
BENCH = REPO / ".bench" / "extract_wiki"
VENV = BENCH / "venv"
PINS = ["wikiextractor==3.1.0", "xmltodict==1.0.4", "wikitextparser==3.0.0"]
COPIES = 10  # 10 x 6.09 MB = 60.9 MB of XML, the size the issue measured on
WORKERS = 2
# Markup that must not survive cleaning (the list); magic words like __TOC__ too.
LEFTOVER = re.compile(r"\{\{|\}\}|\[\[|\]\]|<ref|\{\||\|-|__[A-Z]+__")
# English tail sections for this English input (the Korean defaults stay in the list).
EN_TAIL = ["References", "See also", "External links", "Further reading", "Notes", "Bibliography", "Sources",
           "Notes and references", "Footnotes", "Citations"]

SEED_SCRIPT = '''"""The seed's approach: whole XML through xmltodict, wikitextparser per article,
one file per article."""
import bz2, os, sys
import wikitextparser as wtp
import xmltodict
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
with bz2.open(src, "rb") as f:
    doc = xmltodict.parse(f.read())
n = 0
for page in doc["mediawiki"]["page"]:
    if page.get("ns") != "0" or "redirect" in page:
        continue
    text = page["revision"]["text"]
    text = text.get("#text", "") if isinstance(text, dict) else (text or "")
    with open(os.path.join(out, page["id"] + ".txt"), "w", encoding="utf-8") as g:
        g.write(wtp.parse(text).plain_text())
    n += 1
print(n, "articles")
'''


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_inputs() -> dict[str, Path]:
    if not SRC.is_file() or not MAKE_DUMP.is_file():
        sys.exit(f"benchmark needs {SRC} and {MAKE_DUMP} (the ../shared folder beside the repo)")
    BENCH.mkdir(parents=True, exist_ok=True)
    want = {
        "single": (BENCH / f"enwiki-x{COPIES}.xml.bz2", COPIES, False),
        "multi": (BENCH / f"enwiki-x{COPIES}-multistream.xml.bz2", COPIES, True),
        "multi4x": (BENCH / f"enwiki-x{4 * COPIES}-multistream.xml.bz2", 4 * COPIES, True),
    }
    for dst, copies, multi in want.values():
        if not dst.is_file():
            log(f"making {dst.name} ({copies} copies{', multistream' if multi else ''})")
            tmp = dst.with_name("tmp-" + dst.name)
            subprocess.run([sys.executable, str(MAKE_DUMP), str(SRC), str(tmp), str(copies)]
                           + (["--multistream"] if multi else []), check=True)
            if multi:
                index = "-index.txt.bz2"
                os.replace(str(tmp).replace(".xml.bz2", index), str(dst).replace(".xml.bz2", index))
            os.replace(tmp, dst)
    return {k: v[0] for k, v in want.items()}


def make_venv() -> Path:
    py = VENV / "bin" / "python"
    marker = VENV / "pins.txt"
    if not (py.is_file() and marker.is_file() and marker.read_text() == "\n".join(PINS)):
        log(f"creating {VENV} with {' '.join(PINS)}")
        shutil.rmtree(VENV, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], check=True)
        marker.write_text("\n".join(PINS))
    (BENCH / "seed_extract.py").write_text(SEED_SCRIPT, encoding="utf-8")
    return py


TIME = Path("/usr/bin/time")


def measure(cmd: list[str], **kw) -> tuple[float, float, float | None]:
    """(wall s, peak MB of RSS summed over the process tree, CPU s user+sys of the tree or None) of one command.

    CPU comes from /usr/bin/time where present (it counts every waited-for descendant); steadier than wall time
    on a shared machine.
    """
    cpu_file = BENCH / "cpu.txt"
    if TIME.is_file():
        cmd = [str(TIME), "-f", "%U %S", "-o", str(cpu_file), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    root = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        total = 0
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        peak = max(peak, total)
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    cpu = sum(map(float, cpu_file.read_text().split()[-2:])) if TIME.is_file() else None
    return wall, peak / 1e6, cpu


def ours(dump: Path, out: Path, index: Path | None) -> tuple[float, float, float | None]:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    sec = params["extract_wiki"]
    sec.update(dump=str(dump), index=str(index) if index else "", workers=WORKERS,
               drop_sections=list(sec["drop_sections"]) + EN_TAIL)
    pfile = out.with_suffix(".params.yaml")
    pfile.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return measure([sys.executable, "-m", "stages.extract_wiki", "--params", str(pfile), "--out-dir", str(out),
                    "--metrics", str(out.with_suffix(".metrics.json")), "--no-progress"], cwd=REPO)


def read_ours(out: Path) -> dict[str, str]:
    csv.field_size_limit(sys.maxsize)
    rows = {}
    for split in ("train", "dev", "test"):
        with open(out / f"{split}.csv", encoding="utf-8", newline="") as f:
            rows.update((r["id"], r["text"]) for r in csv.DictReader(f))
    return rows


def read_wikiextractor(out: Path) -> dict[str, str]:
    rows = {}
    for path in sorted(out.rglob("wiki_*")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                rows[doc["id"]] = doc["text"]
    return rows


def main() -> None:
    log(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}: timings on a shared machine are noisy")
    inputs = make_inputs()
    py = make_venv()
    runs = BENCH / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir()
    index = lambda d: Path(str(d).replace(".xml.bz2", "-index.txt.bz2"))  # noqa: E731
    xml_mb = COPIES * 6.089746

    log("ours: multistream + index, 2 workers")
    ours_wall, ours_rss, ours_cpu = ours(inputs["multi"], runs / "ours", index(inputs["multi"]))
    log(f"  {ours_wall:.1f} s, {ours_rss:.0f} MB, CPU {ours_cpu} s")
    log("ours: single-stream .xml.bz2 read front to back, 2 workers")
    single_wall, single_rss, single_cpu = ours(inputs["single"], runs / "ours_single", None)
    log(f"  {single_wall:.1f} s, {single_rss:.0f} MB, CPU {single_cpu} s")
    log("wikiextractor --json --processes 2 on the multistream file")
    we_wall, we_rss, we_cpu = measure([str(py), "-m", "wikiextractor.WikiExtractor", "--json",
                                       "--processes", str(WORKERS), "-o", str(runs / "wikiextractor"),
                                       str(inputs["multi"])])
    log(f"  {we_wall:.1f} s, {we_rss:.0f} MB, CPU {we_cpu} s")
    log("seed approach (xmltodict + wikitextparser, one process)")
    seed_wall, seed_rss, seed_cpu = measure([str(py), str(BENCH / "seed_extract.py"), str(inputs["single"]),
                                             str(runs / "seed")])
    log(f"  {seed_wall:.1f} s, {seed_rss:.0f} MB, CPU {seed_cpu} s")
    log("ours: 4x input (multistream), 2 workers")
    wall_4x, rss_4x, cpu_4x = ours(inputs["multi4x"], runs / "ours_4x", index(inputs["multi4x"]))
    log(f"  {wall_4x:.1f} s, {rss_4x:.0f} MB, CPU {cpu_4x} s")

    mine, theirs = read_ours(runs / "ours"), read_wikiextractor(runs / "wikiextractor")
    assert read_ours(runs / "ours_single") == mine, "single-stream and multistream runs disagree"
    common = set(mine) & set(theirs)
    leftover_rows = [i for i, t in mine.items() if LEFTOVER.search(t)]
    result = {
        "wall_ratio_vs_wikiextractor": round(ours_wall / we_wall, 3),
        "speedup_vs_seed": round(seed_wall / ours_wall, 2),
        "peak_rss_mb": round(ours_rss, 1),
        "peak_rss_mb_4x": round(rss_4x, 1),
        "markup_leftover_rows": len(leftover_rows),
        "chars_ratio_vs_wikiextractor": round(sum(map(len, mine.values())) / sum(map(len, theirs.values())), 3),
        "chars_ratio_vs_wikiextractor_same_articles": round(
            sum(len(mine[i]) for i in common) / sum(len(theirs[i]) for i in common), 3),
        "xml_mb": round(xml_mb, 1),
        "xml_mb_4x": round(4 * xml_mb, 1),
        "ours_wall_s": round(ours_wall, 2),
        "ours_single_stream_wall_s": round(single_wall, 2),
        "ours_single_stream_peak_rss_mb": round(single_rss, 1),
        "ours_wall_s_4x": round(wall_4x, 2),
        "wikiextractor_wall_s": round(we_wall, 2),
        "wikiextractor_peak_rss_mb": round(we_rss, 1),
        "seed_wall_s": round(seed_wall, 2),
        "seed_peak_rss_mb": round(seed_rss, 1),
        "ours_rows": len(mine),
        "wikiextractor_rows": len(theirs),
        "wikiextractor_markup_leftover_rows": sum(1 for t in theirs.values() if LEFTOVER.search(t)),
        "ours_cpu_s": ours_cpu,
        "ours_single_stream_cpu_s": single_cpu,
        "ours_cpu_s_4x": cpu_4x,
        "wikiextractor_cpu_s": we_cpu,
        "seed_cpu_s": seed_cpu,
        "cpu_ratio_vs_wikiextractor": round(ours_cpu / we_cpu, 3) if ours_cpu and we_cpu else None,
        "workers": WORKERS,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    if leftover_rows:
        log(f"rows with markup leftovers (first 5 ids): {leftover_rows[:5]}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
