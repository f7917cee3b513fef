"""finetune_base: Korean continued pretraining with LoRA (torchtune text completion over the kowiki CSV, packed),
then held-out loss on the Korean dev split and on an English text, before and after training."""
from __future__ import annotations

import logging
from pathlib import Path

from koblla.errors import InputError
from koblla.finetune import checks, heldout, tune_config
from koblla.finetune.params import FinetuneBaseParams
from koblla.finetune.runner import Job, train_and_publish, write_metrics

logger = logging.getLogger(__name__)
CONFIG = Path("configs/finetune_base.yaml")


def make_job(p: FinetuneBaseParams, *, seed: int, model_dir: Path, data_dir: Path, out: Path, adapter_out: Path,
             live_dir: Path, config: Path = CONFIG, scratch_root: Path = Path("scratch")) -> Job:
    """Check the inputs and build the job (nothing runs yet)."""
    checks.check_model(model_dir, p, "models.base_dir")
    train = data_dir / "train.csv"
    counts = checks.check_text_csv(train, p)
    logger.info("train: %d documents, %.1f MB of text", counts["documents"], counts["bytes"] / 1e6)
    if p.eval_max_tokens > 0:
        for path in (data_dir / "dev.csv", Path(p.english_eval_text)):
            if not path.is_file():
                raise InputError(f"{path}: missing held-out text (set finetune_base.eval_max_tokens: 0 to skip)")
    return Job("finetune_base", p, config, model_dir, tune_config.base_values(p, model_dir, data_dir, seed),
               [train], out, adapter_out, live_dir, scratch_root, {"train_documents": counts["documents"]})


def evaluate_heldout(p: FinetuneBaseParams, data_dir: Path, init_dir: Path, trained_dir: Path) -> dict:
    """Held-out loss (nats/token) on Korean dev and English text, for the init and the trained model."""
    sets = {"ko": heldout.read_csv_texts(data_dir / "dev.csv", p.text_column),
            "en": heldout.read_paragraphs(Path(p.english_eval_text))}
    out = {}
    for label, model in (("init_", init_dir), ("", trained_dir)):
        for name, r in heldout.heldout_losses(model, sets, max_seq_len=p.max_seq_len, max_tokens=p.eval_max_tokens,
                                              device=p.device, dtype=p.dtype).items():
            out[f"{label}heldout_loss_{name}"] = round(r["loss"], 5)
            out[f"heldout_tokens_{name}"] = r["tokens"]
    return out


def run_finetune_base(p: FinetuneBaseParams, *, seed: int, model_dir: Path, data_dir: Path, out: Path,
                      adapter_out: Path, metrics_path: Path, live_dir: Path, config: Path = CONFIG,
                      scratch_root: Path = Path("scratch")) -> dict:
    job = make_job(p, seed=seed, model_dir=model_dir, data_dir=data_dir, out=out, adapter_out=adapter_out,
                   live_dir=live_dir, config=config, scratch_root=scratch_root)
    metrics = train_and_publish(job)
    if not metrics:  # node_rank > 0
        return metrics
    metrics.update(job.extra_metrics)
    if p.eval_max_tokens > 0:
        metrics.update(evaluate_heldout(p, data_dir, model_dir, out))
    write_metrics(metrics_path, metrics)
    return metrics
