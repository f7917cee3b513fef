"""Run lm-eval's `simple_evaluate` on one loaded model and flatten its results into DVC-friendly metrics.

The flat file has one plain float per key, `<task>/<metric>` (e.g. `truthfulqa_mc2/acc`, `truthfulqa_mc2/acc_stderr`),
plus `<task>/version` (the task's metadata.version) and `<task>/n` (documents scored), so `dvc metrics diff`
shows per-task deltas between experiments.
"""
from __future__ import annotations

import inspect
import logging
import math
from typing import Any

from koblla.errors import EvaluationError

log = logging.getLogger(__name__)


def _num(v: Any) -> float | None:
    """A plain float (numpy scalars included), or None for lm-eval's "N/A" and other non-numbers."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def flatten_results(results: dict, tasks: list[str]) -> dict[str, float]:
    """Flat {task/metric: float} for the requested names (tasks, groups, tags' member tasks).

    lm-eval keys metrics as "acc,none" (metric, filter); the default filter "none" is dropped from the name and
    any other filter is kept as "acc@strict-match".
    """
    res = results.get("results", {})
    versions = results.get("versions", {})
    n_samples = results.get("n-samples", {})
    wanted = [t for t in res if t in tasks]
    # A tag (e.g. koblla_local) is not in results itself: report its member tasks.
    if any(t not in res for t in tasks):
        wanted += [t for t in res if t not in wanted and t not in results.get("groups", {})]
    flat: dict[str, float] = {}
    for task in wanted:
        for key, value in res[task].items():
            if "," not in key:
                continue  # "alias" and other labels
            metric, _, filt = key.partition(",")
            name = metric if filt in ("none", "") else f"{metric}@{filt}"
            num = _num(value)
            if num is not None:
                flat[f"{task}/{name}"] = num
        version = _num(versions.get(task))
        if version is not None:
            flat[f"{task}/version"] = version
        n = n_samples.get(task, {})
        if isinstance(n, dict) and _num(n.get("effective")) is not None:
            flat[f"{task}/n"] = float(n["effective"])
    return flat


def _length_groups(inplen: list[int], spread: int) -> list[list[int]]:
    """Request indices sorted by input length, cut into groups whose lengths differ by at most `spread` tokens."""
    order = sorted(range(len(inplen)), key=inplen.__getitem__)
    groups, start = [], 0
    for j in range(1, len(order) + 1):
        if j == len(order) or inplen[order[j]] - inplen[order[start]] > spread:
            groups.append(order[start:j])
            start = j
    return groups


class _ContinuationLogits:
    """The methods continuation_logits_hflm adds to lm-eval's HFLM (a mixin: HFLM is imported only when needed)."""

    _keep_logits: int | None = None
    group_spread = 16  # tokens of input-length spread per group: small K, few extra groups

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, override_bs=None):
        if self.backend != "causal" or not requests:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        inplen = [min(len(ctx) + len(cont), self.max_length + 1) - 1 for _, ctx, cont in requests]
        groups = _length_groups(inplen, self.group_spread)
        out: list = [None] * len(requests)
        if self.batch_size == "auto" and override_bs is None:
            # Once, on the longest request with full-width logits (every group asks for fewer positions, so
            # this bounds them all). Left to lm-eval, each group call would probe again (~1.5x the forward
            # passes on TruthfulQA, ~11x on KMMLU).
            override_bs = self._detect_batch_size([requests[groups[-1][-1]]])
            log.info("batch_size auto: %d (detected once for %d requests)", override_bs, len(requests))
        try:
            for g in reversed(groups):  # longest first: an out-of-memory error shows at once
                spread = inplen[g[-1]] - inplen[g[0]]
                self._keep_logits = max(len(requests[i][2]) for i in g) + spread
                res = super()._loglikelihood_tokens(
                    [requests[i] for i in g], disable_tqdm=disable_tqdm, override_bs=override_bs
                )
                for i, r in zip(g, res, strict=True):
                    out[i] = r
        finally:
            self._keep_logits = None
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        # lm-eval puts its prefix token (BOS) before every rolling window's text, but HFLM.tok_encode lets a
        # Llama 3 tokenizer add its own BOS too: [BOS, BOS, text...], so the document's likelihood would include
        # log p(BOS | BOS), which no byte of the text accounts for (a trained model finds a second BOS very
        # unlikely). Encode the text bare here: [BOS, text...], bits per byte as the literature defines it.
        saved = self.add_bos_token
        self.add_bos_token = False
        try:
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        finally:
            self.add_bos_token = saved

    def _model_call(self, inps, attn_mask=None, labels=None):
        import torch

        keep = self._keep_logits
        if (keep is None or attn_mask is not None or labels is not None or keep >= inps.shape[1]
                or "logits_to_keep" not in inspect.signature(self.model.forward).parameters):
            return super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        with torch.no_grad(), torch.autocast(
            device_type=self.device.type, dtype=self.mixed_precision_dtype,
            enabled=self.mixed_precision_dtype is not None,
        ):
            return self.model(inps, logits_to_keep=keep).logits


def continuation_logits_hflm():
    """lm-eval's HFLM, computing vocabulary logits only for the trailing positions it reads (a speed-up only).

    For every loglikelihood request lm-eval reads the log-softmax at the continuation's positions; the rest of
    the [batch, seq, vocab] tensor is thrown away. With Llama 3's 128256-token vocabulary that tensor dominates
    the cost (a 460-token TruthfulQA prompt on the tiny model: ~0.5 s of CPU for logits, ~0.02 s for the
    transformer body; ~240 MB per row). lm-eval already accepts logits shorter than the padded input (it finds
    the continuation at `inplen + logits_len - padded_len`), so requests are scored in groups of similar input
    length and the model is asked for the last K positions only, K = longest continuation + (longest input -
    shortest input) of the group: enough for every row of any right-padded batch drawn from it.
    tests/test_evaluate_models.py checks the scores against plain HFLM.
    """
    from lm_eval.models.huggingface import HFLM

    class ContinuationLogitsHFLM(_ContinuationLogits, HFLM):
        pass

    return ContinuationLogitsHFLM


def run_lm_eval(model, tokenizer, task_manager, tasks: list, params, chat_template: bool, seed: int) -> dict:
    """lm-eval results dict for `tasks` on an already loaded HF model (no second load, nothing downloaded)."""
    from lm_eval import simple_evaluate

    lm = continuation_logits_hflm()(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=params.batch_size,
        max_length=params.max_length,
        device=params.device,
    )
    names = [t if isinstance(t, str) else f"{t['task']} ({t['dataset_kwargs']['data_files']})" for t in tasks]
    log.info("lm-eval: %s (num_fewshot=%s, limit=%s, chat template %s)", ", ".join(names), params.num_fewshot,
             params.limit, "on" if chat_template else "off")
    results = simple_evaluate(
        model=lm,
        tasks=tasks,
        num_fewshot=params.num_fewshot,
        limit=params.limit,
        bootstrap_iters=params.bootstrap_iters,
        apply_chat_template=chat_template,
        fewshot_as_multiturn=chat_template and params.fewshot_as_multiturn and bool(params.num_fewshot),
        task_manager=task_manager,
        log_samples=False,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )
    if results is None:  # only on non-zero ranks of a multi-process run
        raise EvaluationError("lm-eval returned no results (a non-zero rank of a multi-process run?); run the "
                              "evaluate stage as one process")
    return results
