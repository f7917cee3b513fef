"""Final numbers and an offline loss-curve PNG from the DVCLive logger's per-step records (steps.jsonl)."""
from __future__ import annotations

import math
from pathlib import Path


def summarize(records: list[dict]) -> dict:
    """final_loss, steps, tokens_seen, tokens_per_second, train_seconds over all logged optimizer steps.

    A step's tokens are the count our recipe copies log (tokens the loss covers, all devices). Throughput leaves
    out the first step of each process: it has no clean start time (model loading, compile and warm-up precede it).
    """
    if not records:
        return {"final_loss": math.nan, "steps": 0, "tokens_seen": 0, "tokens_per_second": 0.0, "train_seconds": 0.0}
    clean = [r for r in records if not r.get("first_in_process")]
    tokens = sum(r["tokens"] for r in records)
    seconds = sum(r["seconds"] for r in clean)
    tps = sum(r["tokens"] for r in clean) / seconds if seconds > 0 else records[-1].get("tokens_per_second", 0.0)
    out = {
        "final_loss": records[-1]["loss"],
        "steps": records[-1]["step"],
        "tokens_seen": int(round(tokens)),
        "tokens_per_second": round(tps, 2),
        "train_seconds": round(seconds, 2),
    }
    peak = [r[k] for r in records for k in ("peak_memory_reserved", "peak_memory_alloc") if k in r]
    if peak:
        out["peak_gpu_memory_gib"] = round(max(peak), 3)  # torchtune reports GiB (CUDA reserved/allocated)
    return out


def plot_loss(records: list[dict], path: Path, title: str) -> None:
    """Loss (and lr) per optimizer step as a PNG, for users without network (dvc plots' HTML needs a CDN)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    steps = [r["step"] for r in records]
    ax.plot(steps, [r["loss"] for r in records], marker="." if len(records) < 50 else None, label="train loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    if records and "lr" in records[0]:
        ax2 = ax.twinx()
        ax2.plot(steps, [r.get("lr", math.nan) for r in records], color="tab:orange", alpha=0.5, label="lr")
        ax2.set_ylabel("learning rate")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
