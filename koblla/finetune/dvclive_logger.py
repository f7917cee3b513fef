"""A torchtune metric logger (MetricLoggerInterface) that writes per-step curves with DVCLive.

Referenced from the torchtune configs as `metric_logger._component_: koblla.finetune.dvclive_logger.DVCLiveLogger`.
Per optimizer step it writes `<log_dir>/plots/metrics/{loss,lr,tokens_per_second,grad_norm,...}.tsv` (columns
step, value), which `dvc plots show` draws (publish_curves moves the wall-time ones out of the DVC output),
and `<log_dir>/metrics.json` (latest values). Beside them it keeps
`steps.jsonl`, one record per step with the wall time and tokens (the count our recipes log as `tokens`), from which
the stage computes the final metrics (tokens seen, tokens/s) across a resumed run.

Resume: torchtune resumes at the last finished epoch, so rows logged after that checkpoint was written belong to
an interrupted epoch that will be trained again. With `resume: True` the logger drops them (every record newer
than `checkpoint_marker`, the recipe state file) and continues the step count from the last kept step.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from koblla.runlog import RUN_DEPENDENT

logger = logging.getLogger(__name__)

STEPS_FILE = "steps.jsonl"
# torchtune's key -> our curve name (tokens/s summed over all devices, not per GPU).
RENAME = {"tokens_per_second_per_gpu": "tokens_per_second"}


def _scalar(v: Any) -> float:
    if hasattr(v, "item"):  # torch tensors (grad_norm arrives as a 0-d tensor)
        v = v.item()
    return float(v)


# Curves that differ on every run and machine (wall time, throughput, GPU memory): published beside the DVCLive
# folder, in `<live_dir>.timings/` (git-ignored, not a DVC output), so that a rerun leaves dvc.lock unchanged.
def _run_dependent(name: str) -> bool:
    return name in RUN_DEPENDENT or name.startswith("peak_memory")  # torchtune's CUDA curves: peak_memory_*


def publish_curves(work_live: Path, dest: Path, timings_dir: Path) -> None:
    """Copy a run's DVCLive folder `work_live` into `dest`, minus the run-dependent curves and steps.jsonl (wall
    times), which go to `timings_dir`; dest/metrics.json keeps only the deterministic values (loss, lr, ...)."""
    shutil.rmtree(timings_dir, ignore_errors=True)
    timings_dir.mkdir(parents=True)
    for src in sorted(p for p in work_live.rglob("*") if p.is_file()):
        rel = src.relative_to(work_live)
        timing = rel.name == STEPS_FILE or (rel.suffix == ".tsv" and _run_dependent(rel.stem))
        target = (timings_dir / rel.name) if timing else dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel.as_posix() == "metrics.json":
            summary = json.loads(src.read_text(encoding="utf-8"))
            kept = {k: v for k, v in summary.items() if not _run_dependent(k)}
            target.write_text(json.dumps(kept, indent=4) + "\n", encoding="utf-8")
        else:
            shutil.copy2(src, target)


def read_steps(log_dir: str | os.PathLike) -> list[dict]:
    """The per-step records of a run (empty when none were logged)."""
    path = Path(log_dir) / STEPS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class DVCLiveLogger:
    """torchtune MetricLoggerInterface backed by `dvclive.Live(dir=log_dir, dvcyaml=False, save_dvc_exp=False)`.

    Args:
        log_dir: DVCLive directory (plots/metrics/*.tsv, metrics.json) and steps.jsonl.
        resume: keep earlier curves, dropping steps logged after `checkpoint_marker` was written.
        checkpoint_marker: the file torchtune writes at each resumable checkpoint (recipe_state.pt).
    """

    def __init__(self, log_dir: str, resume: bool = False, checkpoint_marker: str | None = None, **_: Any):
        from dvclive import Live

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self._records: list[dict] = []
        if resume:
            self._records = self._kept_records(checkpoint_marker)
        else:
            (self.log_dir / STEPS_FILE).unlink(missing_ok=True)
        self._last_step = self._records[-1]["step"] if self._records else 0
        self._offset: int | None = None  # torchtune step -> our step, fixed at the first log call
        self._last_time = time.perf_counter()
        self._first_call = True
        self._live = Live(dir=str(self.log_dir), resume=resume, dvcyaml=False, save_dvc_exp=False,
                          report=None, monitor_system=False)
        if resume:
            self._truncate_tsvs(self._last_step)
        self._rewrite_steps()

    # ---- resume bookkeeping -------------------------------------------------------------------------------------
    def _kept_records(self, marker: str | None) -> list[dict]:
        records = read_steps(self.log_dir)
        if marker and Path(marker).is_file():
            cutoff = Path(marker).stat().st_mtime
            records = [r for r in records if r["time"] <= cutoff]
        elif marker:
            records = []  # no checkpoint: torchtune starts over, so do the curves
        return records

    def _truncate_tsvs(self, last_step: int) -> None:
        for tsv in (self.log_dir / "plots" / "metrics").rglob("*.tsv"):
            lines = tsv.read_text(encoding="utf-8").splitlines()
            if not lines:
                continue
            header, rows = lines[0], lines[1:]
            col = header.split("\t").index("step")
            kept = [r for r in rows if int(r.split("\t")[col]) <= last_step]
            tsv.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")

    def _rewrite_steps(self) -> None:
        path = self.log_dir / STEPS_FILE
        path.write_text("".join(json.dumps(r) + "\n" for r in self._records), encoding="utf-8")

    # ---- MetricLoggerInterface ----------------------------------------------------------------------------------
    def log(self, name: str, data: Any, step: int) -> None:
        self.log_dict({name: data}, step)

    def log_config(self, config: Any) -> None:
        # The stage saves the finished config itself (beside the model); nothing to add here.
        pass

    def log_dict(self, payload: Mapping[str, Any], step: int) -> None:
        if self._offset is None:
            # Stock torchtune 0.6.1 restarts its step count at 1 on resume unless max_steps_per_epoch cuts the epoch
            # (our recipe copies continue it; then the offset is 0).
            self._offset = self._last_step + 1 - step if step <= self._last_step else 0
        step = step + self._offset
        now = time.perf_counter()
        dt, self._last_time = now - self._last_time, now  # seconds of this step (the recipe logs every step)
        values = {RENAME.get(k, k): _scalar(v) for k, v in payload.items()}
        tokens = values.pop("tokens", None)  # this step's tokens (all ranks); a count, not a curve
        if "tokens_per_second" in values:
            values["tokens_per_second"] *= self._world_size
        self._live.step = step
        for name, value in values.items():
            self._live.log_metric(name, value)
        self._live.make_summary()
        tps = values.get("tokens_per_second", math.nan)
        # A recipe that logs no token count (stock torchtune's) gets the estimate tokens/s x step time.
        record = {"step": step, "time": time.time(), "seconds": dt, "tokens": tps * dt if tokens is None else tokens,
                  "first_in_process": self._first_call, **values}
        self._first_call = False
        self._records.append(record)
        with open(self.log_dir / STEPS_FILE, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._live.make_summary()
