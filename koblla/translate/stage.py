"""The translate stage: read the conversations, translate them (memory first), write the datasets and metrics."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from koblla.runlog import write_metrics
from koblla.translate.inputs import read_conversations
from koblla.translate.memory import TranslationMemory
from koblla.translate.outputs import write_outputs
from koblla.translate.pipeline import translate_conversations

log = logging.getLogger(__name__)


def run_translate(params, out_dir: str | Path, memory_dir: str | Path, metrics_path: str | Path | None) -> dict:
    """The whole stage: read, translate (memory first), write datasets and metrics. Returns the metrics."""
    t0 = time.monotonic()
    convs, report = read_conversations(params, params.on_bad_record)
    memory = TranslationMemory(memory_dir, params.seed_memory)
    try:
        results, counters = translate_conversations(convs, params, memory)
    finally:
        memory.close()
    counts = write_outputs(results, out_dir, params.system_prompt)
    metrics = {
        "backend": params.backend,
        "model": params.model,
        "prompt_version": params.prompt_version,
        "assistant_register": params.assistant_register,
        "items": len(convs),
        "items_written": counts["kolima"],
        "items_written_en": counts["lima_en"],
        "items_flagged": sum(not r.ok for r in results),
        "skipped_records": report.skipped,
        "skip_reasons": report.skip_reasons,
        "turns": sum(len(c.turns) for c in convs),
        **counters,
        "memory_records": len(memory),
        "seconds": round(time.monotonic() - t0, 2),
    }
    if metrics_path:
        write_metrics(metrics_path, metrics)
    return metrics
