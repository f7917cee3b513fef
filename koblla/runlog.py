"""Metrics files hold what a run computed, never how long it took: timings go to an untracked file beside them.

Wall-clock seconds, throughput, peak memory and the core count differ on every run and machine. In a metrics file
(a DVC output whose hash dvc.lock records) they would make every rerun look like a change: `git status` dirty
after `make repro` on a fresh clone, `-0.0` rows in `dvc metrics diff`. `write_metrics` writes them to
`<name>.timings.json` beside the metrics file instead (ignored by git, not a DVC output; the stage logs them too).
"""
from __future__ import annotations

import os
from pathlib import Path

from koblla.atomic import write_json

RUN_DEPENDENT = ("seconds", "mb_per_s", "tokens_per_second", "train_seconds", "peak_rss_gib", "peak_rss_mb",
                 "peak_gpu_memory_gib", "workers")


def timings_path(metrics_path: str | os.PathLike) -> Path:
    p = Path(metrics_path)
    return p.with_name(f"{p.stem}.timings.json")


def write_metrics(path: str | os.PathLike, metrics: dict) -> None:
    """Write `metrics` minus RUN_DEPENDENT keys to `path`, and those keys to timings_path(path)."""
    write_json(path, {k: v for k, v in metrics.items() if k not in RUN_DEPENDENT})
    timings = {k: metrics[k] for k in RUN_DEPENDENT if k in metrics}
    if timings:
        write_json(timings_path(path), timings)
