"""extract_wiki: dump -> data/kowiki/{train,dev,test}.csv + metrics, on every core, in dump order.

Work is cut into tasks (one multistream bz2 stream, or one batch of pages read front to back); worker processes
clean them and the main process writes their rows in task order. At most `2 * workers` tasks are in flight, so
memory stays bounded whatever the dump's size.
"""
from __future__ import annotations

import csv
import ctypes
import hashlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from koblla.atomic import atomic_dir
from koblla.errors import InputError, KoBLLaError
from koblla.params import require_path
from koblla.runlog import write_metrics
from koblla.wiki.clean import CleanConfig
from koblla.wiki.dump import (
    SequentialReader,
    check_multistream_footer,
    parse_siteinfo,
    read_multistream_header,
    read_stream_pages,
)
from koblla.wiki.multistream import Stream, read_index
from koblla.wiki.pages import MAX_ERRORS_KEPT, BatchResult, PageConfig, process_pages
from koblla.wiki.params import ExtractWikiParams

log = logging.getLogger(__name__)

COLUMNS = ("id", "revid", "url", "title", "text")
SPLITS = ("train", "dev", "test")
DROP_REASONS = ("namespace", "redirect", "disambiguation", "too_short", "too_large", "too_slow")

# Per-process state set by _init_worker (passed once per worker, not once per task).
_CFG: PageConfig | None = None
_DUMP: Path | None = None


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent_pid: int) -> None:
    """Make the kernel SIGKILL this worker when its parent dies (even by kill -9): no orphan keeps a core busy
    or blocks on a result pipe nobody reads. Linux only; elsewhere the parent's own cleanup has to do."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _init_worker(cfg: PageConfig, dump: Path, parent_pid: int | None = None) -> None:
    global _CFG, _DUMP
    _CFG, _DUMP = cfg, dump
    if parent_pid is not None:  # a worker process, not the inline single-worker path
        _die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent stops us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stream_task(stream: Stream) -> tuple[BatchResult, int]:
    pages, end = read_stream_pages(_DUMP, stream)
    result = process_pages(pages, _CFG)
    expected = stream.page_ids.tolist()
    if result.page_ids != expected:
        # shorter wins: None when one id list is a prefix of the other
        got = next((g for g, w in zip(result.page_ids, expected, strict=False) if g != w), None)
        raise InputError(
            f"{_DUMP}: the stream at offset {stream.offset} holds {len(result.page_ids)} pages (ids "
            f"{result.page_ids[:3]}...) but the index lists {len(expected)} (ids {expected[:3]}...)"
            f"{f'; first differing page id {got}' if got is not None else ''}: the index does not match this dump"
        )
    return result, end


def _batch_task(pages: list[bytes]) -> tuple[BatchResult, int]:
    return process_pages(pages, _CFG), 0


def ordered_map(fn: Callable, tasks: Iterable, workers: int, initargs: tuple) -> Iterator:
    """fn over tasks in worker processes, results in task order, at most 2*workers tasks in flight."""
    if workers <= 1:
        _init_worker(*initargs)
        for t in tasks:
            yield fn(t)
        return
    # fork: workers start in milliseconds and inherit the imported modules. A worker that dies (e.g. killed for
    # memory) breaks the executor and fails the run, where multiprocessing.Pool would wait forever.
    ex = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_init_worker,
                             initargs=(*initargs, os.getpid()))
    pending: deque = deque()
    finished = False
    try:
        for t in tasks:
            pending.append(ex.submit(fn, t))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    except BrokenProcessPool as e:
        raise KoBLLaError(
            f"an extract_wiki worker process died ({e}); if it ran out of memory, lower extract_wiki.workers"
        ) from None
    finally:
        if not finished:  # an error, Ctrl-C or SIGTERM: stop the workers now, not after their current page
            for proc in list((getattr(ex, "_processes", None) or {}).values()):
                proc.kill()
        ex.shutdown(wait=finished, cancel_futures=True)


def split_of(page_id: int, dev: float, test: float) -> str:
    """Deterministic split from the page id alone: a page stays in its split across dump dates and runs."""
    h = int.from_bytes(hashlib.blake2b(str(page_id).encode(), digest_size=8).digest(), "big") / 2.0**64
    return "dev" if h < dev else "test" if h < dev + test else "train"


def resolve_workers(workers: int) -> int:
    if workers > 0:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class DumpSource:
    """Where the pages come from: one task per multistream stream (with an index) or per batch (read front to back)."""

    dump: Path
    size: int
    cfg: PageConfig
    fn: Callable
    tasks: Iterable
    reader: SequentialReader | None  # the front-to-back reader (None with an index); closed by the caller


@dataclass
class ExtractTotals:
    counts: Counter = field(default_factory=Counter)
    rows_per_split: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def open_dump(params: ExtractWikiParams, dump: Path, size: int) -> DumpSource:
    """Cut the dump into tasks and build the cleaning config from its siteinfo (namespaces, base URL)."""
    if params.index:
        index = require_path("extract_wiki.index", params.index)
        streams = read_index(index, size)
        if not streams:
            raise InputError(f"{index}: the multistream index lists no pages (empty index for {dump})")
        header = read_multistream_header(dump, streams[0].offset)
        fn, tasks, reader = _stream_task, streams, None
    else:
        reader = SequentialReader(dump)
        header = reader.header
        fn, tasks = _batch_task, reader
    site = parse_siteinfo(header, dump)
    cfg = PageConfig(
        clean=CleanConfig.build(
            params.keep_templates, params.drop_sections, params.keep_headings,
            file_prefixes=site.namespaces.get(6, []), category_prefixes=site.namespaces.get(14, []),
        ),
        min_chars=params.min_chars,
        drop_disambiguation=params.drop_disambiguation,
        disambiguation_re=PageConfig.disambiguation_pattern(params.disambiguation_templates),
        url_base=site.base_url,
        max_page_chars=params.max_page_chars,
        max_page_seconds=params.max_page_seconds,
    )
    return DumpSource(dump, size, cfg, fn, tasks, reader)


def read_pages(src: DumpSource, workers: int, bar: tqdm) -> Iterator[BatchResult]:
    """The cleaned pages of every task, in dump order; advances `bar` after each, checks the footer at the end."""
    pages_read = 0
    last_end = 0
    for i, (res, end) in enumerate(ordered_map(src.fn, src.tasks, workers, (src.cfg, src.dump))):
        yield res
        pages_read += res.counts["pages_read"]
        if src.reader is None:
            last_end = end
            bar.update((end - src.tasks[i].offset) if i else end)  # the first also covers the header
        else:
            bar.update(src.reader.compressed_pos - bar.n)
        bar.set_postfix_str(f"{pages_read} pages", refresh=False)
    if src.reader is None:
        check_multistream_footer(src.dump, last_end)
    bar.update(src.size - bar.n)


def write_splits(params: ExtractWikiParams, results: Iterable[BatchResult], out_dir: str | os.PathLike,
                 dump: Path) -> ExtractTotals:
    """Write every row to its split's CSV, all three atomically: a failed check leaves out_dir as it was."""
    totals = ExtractTotals()
    with atomic_dir(out_dir) as tmp:
        files = {s: open(Path(tmp) / f"{s}.csv", "w", encoding="utf-8", newline="") for s in SPLITS}
        try:
            writers = {s: csv.writer(f, lineterminator="\n") for s, f in files.items()}
            for w in writers.values():
                w.writerow(COLUMNS)
            for res in results:
                totals.counts.update(res.counts)
                totals.errors.extend(res.errors)
                totals.skipped.extend(res.skipped)
                for row in res.rows:
                    s = split_of(row[0], params.split.dev, params.split.test)
                    writers[s].writerow(row)
                    totals.rows_per_split[s] += 1
        finally:
            for f in files.values():
                f.close()
        check_totals(params, totals, dump)
    return totals


def check_totals(params: ExtractWikiParams, totals: ExtractTotals, dump: Path) -> None:
    """Fail on a dump with no pages, too many parse errors, or no page left after cleaning."""
    counts = totals.counts
    if counts["pages_read"] == 0:
        raise InputError(f"{dump}: the dump holds no <page> elements; nothing to extract")
    share = counts["parse_errors"] / counts["pages_read"]
    if share > params.max_parse_error_share:
        raise InputError(
            f"{dump}: {counts['parse_errors']} of {counts['pages_read']} pages ({share:.1%}) failed to parse, "
            f"more than extract_wiki.max_parse_error_share {params.max_parse_error_share:.1%}; first: "
            f"{totals.errors[:3]}. Is the dump damaged or re-encoded? Re-download it, or raise the param"
        )
    if counts["pages_kept"] == 0:
        raise InputError(
            f"{dump}: none of its {counts['pages_read']} pages survived cleaning (dropped: "
            f"{ {k: counts['dropped_' + k] for k in DROP_REASONS} }); check extract_wiki.min_chars"
        )


def extraction_metrics(totals: ExtractTotals, size: int, workers: int, seconds: float) -> dict:
    """The flat metrics of a run (metrics/extract_wiki.json); warns about an empty split."""
    counts, rows_per_split = totals.counts, totals.rows_per_split
    for s in SPLITS:
        if rows_per_split[s] == 0:
            log.warning("split %s is empty (%d articles kept): consider larger extract_wiki.split fractions",
                        s, counts["pages_kept"])
    return {
        "pages_read": counts["pages_read"],
        "pages_kept": counts["pages_kept"],
        "dropped": {k: counts["dropped_" + k] for k in DROP_REASONS},
        "parse_errors": counts["parse_errors"],
        "parse_error_pages": totals.errors[:MAX_ERRORS_KEPT],
        "skipped_pages": totals.skipped[:MAX_ERRORS_KEPT],
        "chars_out": counts["chars_out"],
        "rows": {s: rows_per_split[s] for s in SPLITS},
        "dump_mb": round(size / 1e6, 3),
        "workers": workers,
        "seconds": round(seconds, 2),
        "mb_per_s": round(size / 1e6 / seconds, 3) if seconds else None,
    }


def extract_wiki(params: ExtractWikiParams, out_dir: str | os.PathLike, metrics_path: str | os.PathLike | None,
                 progress: bool = True) -> dict:
    """Run the stage: read the dump, write the splits, measure; returns the metrics dict (also written to
    metrics_path)."""
    t0 = time.perf_counter()
    dump = require_path("extract_wiki.dump", params.dump)
    size = dump.stat().st_size
    if size == 0:
        raise InputError(f"{dump}: the dump file is empty (0 bytes); re-download it")
    workers = resolve_workers(params.workers)
    src = open_dump(params, dump, size)
    log.info("extracting %s (%.1f MB, %s, %d workers)", dump, size / 1e6,
             f"{len(src.tasks)} streams" if params.index else "read front to back", workers)
    bar = tqdm(total=size, unit="B", unit_scale=True, desc="extract_wiki", file=sys.stderr, disable=not progress,
               mininterval=0.5, dynamic_ncols=True)
    try:
        totals = write_splits(params, read_pages(src, workers, bar), out_dir, dump)
    finally:
        bar.close()
        if src.reader is not None:
            src.reader.close()
    metrics = extraction_metrics(totals, size, workers, time.perf_counter() - t0)
    if metrics_path is not None:
        write_metrics(metrics_path, metrics)
    return metrics
