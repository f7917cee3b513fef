"""Evaluate one model of the chain: lm-eval scores (flat DVC metrics) and sample generations.

`run_evaluate` checks everything cheap first (task names, local sample files, prompt set, model folder and
tokenizer), then loads the model once and uses it for both lm-eval and the generations.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from koblla.atomic import atomic_file, write_json
from koblla.errors import EvaluationError

log = logging.getLogger(__name__)


def run_evaluate(
    name: str, model_dir: str | Path, kind: str, params, evals_dir: str | Path,
    metrics_path: str | Path, generations_path: str | Path, seed: int = 42, raw_results_dir: str | Path | None = None,
) -> dict[str, float]:
    """Score `model_dir` on params.tasks and answer the prompt set; write both outputs atomically; return metrics."""
    from koblla.evaluate.generate import generate_samples, load_prompts, summarize_registers
    from koblla.evaluate.harness import flatten_results, run_lm_eval
    from koblla.evaluate.hubdata import check_cached, hub_datasets
    from koblla.evaluate.modeldir import check_model_dir, load_model
    from koblla.evaluate.tasks import check_local_samples, make_task_manager, task_specs

    t0 = time.monotonic()
    # --- everything that can be wrong is checked before the weights load -------------------------------------
    tm = make_task_manager(params.tasks, evals_dir)
    check_local_samples(tm, params.tasks, evals_dir, params.data_files)
    check_cached(hub_datasets(tm, params.tasks, evals_dir))  # built-in tasks: their HF data, offline
    specs = task_specs(tm, params.tasks, evals_dir, params.data_files)
    prompts_version = Path(params.generation.prompts).stem
    load_prompts(params.generation.prompts, params.generation.limit)
    info = check_model_dir(model_dir, kind)
    chat_template = kind == "instruct" and params.apply_chat_template

    model, tokenizer = load_model(info.path, params.device, params.dtype)
    results = run_lm_eval(model, tokenizer, tm, specs, params, chat_template, seed)
    metrics = flatten_results(results, params.tasks)
    if not metrics:
        raise EvaluationError(f"lm-eval returned no scores for {params.tasks}: check evaluate.tasks (each a task, "
                              "group or tag that lm-eval lists, with a numeric metric)")
    if raw_results_dir is not None:
        # Full lm-eval output (configs, per-subtask scores) for inspection; not a DVC output.
        write_json(Path(raw_results_dir) / f"{name}.json", json.loads(json.dumps(results, default=str)))

    records = generate_samples(model, tokenizer, name, kind, params.generation, prompts_version)
    metrics.update(summarize_registers(records))

    with atomic_file(generations_path) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    write_json(metrics_path, metrics)
    log.info("%s: evaluated in %.1f s", name, time.monotonic() - t0)
    return metrics
