"""Run one finetune stage: plan the `tune run` command, resume or start it in scratch, publish the outputs.

Working state lives in `scratch/<stage>/<run_key: the config and the inputs' content>/` (torchtune's output_dir:
epoch_N/, recipe_state/, dvclive/; run_config.yaml, the finished config this attempt runs). A run killed
mid-training (kill -9, a lost node) and started again with the same params finds the last finished epoch there and
passes torchtune `resume_from_checkpoint=True`; changed params or inputs hash to a new folder and start fresh. Only a
finished run is published (atomically) to the fixed paths.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from koblla import runlog
from koblla.atomic import atomic_dir, remove_stale_temps
from koblla.errors import KoBLLaError
from koblla.finetune import publish, report, tune_command, tune_config
from koblla.finetune.dvclive_logger import publish_curves, read_steps
from koblla.finetune.params import FinetuneParams
from koblla.finetune.run_key import config_hash, run_key

logger = logging.getLogger(__name__)

DONE = "KOBLLA_DONE"  # written in the work dir once torchtune exits 0
RUN_CONFIG = "run_config.yaml"  # in the work dir: the finished config `tune run --config` gets


class TrainingError(KoBLLaError):
    """torchtune failed or trained nothing; the message says what to look at."""


@dataclass
class Job:
    stage: str
    params: FinetuneParams
    config: Path  # configs/<stage>.yaml: torchtune's structure, `???` where the stage fills a value
    model_dir: Path  # init checkpoint (HF layout)
    values: dict  # what the stage fills, by dotted key (tune_config.base_values / instruct_values)
    inputs: list[Path]  # files whose change must start a fresh run (hashed by content)
    out: Path
    adapter_out: Path
    live_dir: Path
    scratch_root: Path = Path("scratch")
    extra_metrics: dict = field(default_factory=dict)


@dataclass
class Plan:
    work: Path
    config_hash: str
    resume_epochs: int | None  # epochs already finished (resume), None = fresh start
    done: bool  # a finished run waits only to be published
    cmd: list[str]
    run_config_text: str  # the finished config this attempt runs (its work dir, its resume flags)
    config_text: str  # the finished config of a fresh run in scratch/<stage>, as published beside the model


def _epochs_finished(work: Path) -> int | None:
    """Epochs a resumable checkpoint in `work` covers, or None. Drops a half-written later epoch."""
    import torch

    state = work / "recipe_state" / "recipe_state.pt"
    if not state.is_file():
        return None
    try:
        epochs = int(torch.load(state, weights_only=True, map_location="cpu")["epochs_run"])
    except Exception as e:  # a kill while torch.save wrote it: start over
        logger.warning("%s is unreadable (%s); starting over", state, e)
        return None
    if not (work / f"epoch_{epochs - 1}" / "adapter_model.pt").is_file():
        return None
    for d in work.glob("epoch_*"):
        if d.is_dir() and int(d.name.split("_")[1]) >= epochs:
            shutil.rmtree(d)  # written after the checkpoint (interrupted save): torchtune would load it
    return epochs


def _header(job: Job) -> str:
    by_hand = tune_command.build_command(job.params, job.stage, "<this file>", executable="tune")
    return (f"# Finished torchtune config of KoBLLa stage {job.stage}: configs/{job.config.name} with its ??? keys "
            f"filled from params.yaml ({job.stage}) and the checkpoint's config.json.\n"
            f"# Re-run by hand from the repo root: {' '.join(by_hand)}\n")


def plan(job: Job) -> Plan:
    """Work dir, resume state, the finished configs and the exact command, without running anything."""
    cfg = tune_config.stage_config(job.config, job.values, job.params.tune_overrides, job.stage)
    work = job.scratch_root / job.stage / run_key(cfg, [job.model_dir, *job.inputs])
    done = (work / DONE).is_file()
    resume = None if done else _epochs_finished(work)
    if not done and resume is None and work.exists():
        shutil.rmtree(work)  # leftovers of a run that died before its first checkpoint
    header = _header(job)
    run_text = tune_config.config_text(tune_config.finished_config(cfg, work, resume is not None, job.config), header)
    # What is published beside the model is the config of a fresh run in scratch/<stage>: the run-specific folder
    # and the resume flags would make the same weights publish differently after a resume or a changed input.
    fresh = tune_config.finished_config(cfg, job.scratch_root / job.stage, False, job.config)
    cmd = tune_command.build_command(job.params, job.stage, work / RUN_CONFIG)
    return Plan(work, config_hash(cfg), resume, done, cmd, run_text, tune_config.config_text(fresh, header))


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the stage process dies, so a killed stage leaves no orphan trainer."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _run(cmd: list[str]) -> tuple[int, float]:
    """Run the trainer; returns (exit code, peak resident memory of its process tree in GiB)."""
    import psutil

    logger.info("running: %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, preexec_fn=_die_with_parent if os.name == "posix" else None)
    peak = 0
    try:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                peak = max(peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.2)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, peak / 2**30


def base_model_path(model_dir: Path) -> str:
    """The adapter's base_model_name_or_path: relative to the working directory (the repo root, where dvc runs the
    stages: the same in every clone) when the init checkpoint is under it, else absolute. docs/finetune.md says how
    to load the adapter from elsewhere."""
    path = model_dir.resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def train_and_publish(job: Job) -> dict:
    """Run (or resume) training, publish merged + adapter + curves; returns the metrics dict (not yet written)."""
    p = job.params
    # Node 0 alone publishes, so it alone cleans (pids are per host: another node cannot tell a live writer).
    for path in (job.out, job.adapter_out, job.live_dir) if p.node_rank == 0 else ():
        for tmp in remove_stale_temps(path):  # a publish killed half-way (16 GB for 8B)
            logger.info("removed %s, left by a killed run", tmp)
    pl = plan(job)
    pl.work.mkdir(parents=True, exist_ok=True)
    tune_config.write_config(pl.work / RUN_CONFIG, pl.run_config_text)
    peak_rss = 0.0
    if pl.done:
        logger.info("%s: finished run found in %s; publishing it", job.stage, pl.work)
    else:
        if pl.resume_epochs is not None:
            logger.info("%s: resuming from %s after %d finished epoch(s)", job.stage, pl.work, pl.resume_epochs)
        rc, peak_rss = _run(pl.cmd)
        if rc != 0:
            raise TrainingError(f"torchtune exited with code {rc} (its log is above); working state is in "
                                f"{pl.work}: rerunning the stage resumes from the last finished epoch")
        (pl.work / DONE).write_text("ok\n")
    if p.node_rank != 0:
        logger.info("node_rank %d: training done; node 0 publishes the outputs", p.node_rank)
        return {}
    records = read_steps(pl.work / "dvclive")
    if not records:
        raise TrainingError(f"{job.stage}: torchtune ran zero optimizer steps: the dataset gives fewer batches "
                            "than batch_size * gradient_accumulation_steps; add data or lower them")
    epoch_dir = pl.work / f"epoch_{p.epochs - 1}"
    publish.publish_adapter(epoch_dir, job.adapter_out, p.save_dtype, pl.config_text,
                            base_model=base_model_path(job.model_dir), lora_dropout=p.lora_dropout,
                            use_dora=p.use_dora)
    publish.publish_merged(epoch_dir, job.model_dir, job.adapter_out, job.out, p.save_dtype, pl.config_text)
    with atomic_dir(job.live_dir) as tmp:
        publish_curves(pl.work / "dvclive", tmp, job.live_dir.with_name(f"{job.live_dir.name}.timings"))
        report.plot_loss(records, tmp / "loss.png", f"{job.stage}: training loss")
    metrics = {
        "stage": job.stage,
        "recipe": tune_command.recipe_for(p),
        "devices": p.nproc_per_node * p.nnodes,
        "device": p.device,
        "dtype": p.dtype,
        "config_hash": pl.config_hash,
        "resumed_after_epochs": pl.resume_epochs or 0,
        **report.summarize(records),
    }
    if p.device == "cpu" or "peak_gpu_memory_gib" not in metrics:
        metrics["peak_rss_gib"] = round(peak_rss, 3)  # resident memory of the whole trainer process tree
    if not p.keep_scratch:
        shutil.rmtree(pl.work, ignore_errors=True)
    return metrics


def write_metrics(path: Path, metrics: dict) -> None:
    runlog.write_metrics(path, metrics)  # timings beside it, not in it (koblla/runlog.py)
