"""finetune_instruct: chat SFT with LoRA on the weighted LIMA-ko mix, starting from the chat-vector model."""
from __future__ import annotations

import logging
from pathlib import Path

from koblla.errors import InputError
from koblla.finetune import checks, tune_config
from koblla.finetune.params import FinetuneInstructParams
from koblla.finetune.runner import Job, train_and_publish, write_metrics

logger = logging.getLogger(__name__)
CONFIG = Path("configs/finetune_instruct.yaml")


def make_job(p: FinetuneInstructParams, *, seed: int, model_dir: Path, data_dir: Path, out: Path,
             adapter_out: Path, live_dir: Path, config: Path = CONFIG, scratch_root: Path = Path("scratch"),
             meta_instruct_dir: Path | None = None) -> Job:
    """Check the inputs and build the job (nothing runs yet). `meta_instruct_dir` (models.instruct_dir) is refused
    as the starting point: SFT starts from the chat-vector model, never from Meta's Instruct weights."""
    if meta_instruct_dir is not None and model_dir.resolve() == meta_instruct_dir.resolve():
        raise InputError(f"finetune_instruct must start from chat_vector's output (models/koblla-chatvec), not from "
                         f"Meta's Instruct weights ({model_dir} = models.instruct_dir)")
    checks.check_model(model_dir, p, "--model-dir (chat_vector's output)")
    counts = checks.check_chat_sets(data_dir, p)
    logger.info("chat records per set: %s; weights %s", counts, p.datasets)
    files = [data_dir / f"{name}.jsonl" for name, w in p.datasets.items() if w > 0]
    return Job("finetune_instruct", p, config, model_dir, tune_config.instruct_values(p, model_dir, data_dir, seed),
               files, out, adapter_out, live_dir, scratch_root,
               {"chat_records": counts, "mix_weights": dict(p.datasets)})


def run_finetune_instruct(p: FinetuneInstructParams, *, seed: int, model_dir: Path, data_dir: Path, out: Path,
                          adapter_out: Path, metrics_path: Path, live_dir: Path, config: Path = CONFIG,
                          scratch_root: Path = Path("scratch"), meta_instruct_dir: Path | None = None) -> dict:
    job = make_job(p, seed=seed, model_dir=model_dir, data_dir=data_dir, out=out, adapter_out=adapter_out,
                   live_dir=live_dir, config=config, scratch_root=scratch_root, meta_instruct_dir=meta_instruct_dir)
    metrics = train_and_publish(job)
    if metrics:
        metrics.update(job.extra_metrics)
        write_metrics(metrics_path, metrics)
    return metrics
