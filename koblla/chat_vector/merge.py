"""Chat vector: out = korean + ratio * (instruct - base). Checks the three inputs, then streams the merge.

Everything that can be checked from headers and configs (keys, shapes, dtypes, architecture, eos, vocab, token
ids, tokenizer) is checked before a byte is written; the merge itself (merger.py) streams into a temp dir that
replaces the output only when complete, so an error (e.g. a NaN found mid-way) leaves no partial output.
"""
from __future__ import annotations

import logging
import math
import re
import resource
import time
from pathlib import Path

from tqdm import tqdm

from koblla.atomic import atomic_dir
from koblla.chat_vector.checkpoint import ITEMSIZE, Checkpoint, open_checkpoint
from koblla.chat_vector.merger import MAX_FINITE, Merger
from koblla.chat_vector.model_files import check_configs, check_tokenizer, model_dir, write_model_files
from koblla.chat_vector.params import ChatVectorParams
from koblla.chat_vector.writer import plan_shards, write_index
from koblla.errors import InputError

log = logging.getLogger(__name__)

CHUNK_ELEMENTS = 1 << 21  # elements per block (4 MiB of bf16); larger blocks cut per-block overhead, cost RSS
EMBED_RE = re.compile(r"(embed_tokens|lm_head)\.weight$")
OUT_DTYPES = {"bf16": "BF16", "fp16": "F16", "fp32": "F32"}


def group_of(name: str) -> str:
    """Metric group of an HF Llama tensor name."""
    if EMBED_RE.search(name):
        return "embeddings"
    if "norm" in name:
        return "norms"
    if "attn" in name:
        return "attention"
    if "mlp" in name:
        return "mlp"
    return "other"


def check_tensors(ck: Checkpoint, cb: Checkpoint, ci: Checkpoint, keep_korean_vocab: bool) -> dict[str, bool]:
    """name -> True to merge, False to keep korean's tensor (vocab mismatch, when told); errors name key and file."""
    for other in (cb, ci):
        for a, b in ((ck, other), (other, ck)):
            missing = [k for k in a.tensors if k not in b.tensors]
            if missing:
                shown = ", ".join(repr(k) for k in missing[:5])
                shown += f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise InputError(
                    f"tensor(s) {shown} of the {a.role} model ({a.tensors[missing[0]].file}) are missing from the "
                    f"{b.role} model ({b.path}); all three models must have the same tensors"
                )
    plan: dict[str, bool] = {}
    for name, k in ck.tensors.items():
        b, i = cb.tensors[name], ci.tensors[name]
        if b.shape != i.shape:
            raise InputError(f"tensor {name!r}: shape {list(b.shape)} in base ({b.file}) but {list(i.shape)} in "
                             f"instruct ({i.file})")
        if k.shape != b.shape:
            vocab_only = EMBED_RE.search(name) and len(k.shape) == 2 and k.shape[1:] == b.shape[1:]
            if not vocab_only:
                raise InputError(f"tensor {name!r}: shape {list(k.shape)} in korean ({k.file}) but {list(b.shape)} "
                                 f"in base ({b.file})")
            if not keep_korean_vocab:
                raise InputError(
                    f"tensor {name!r}: vocab size {k.shape[0]} in korean ({k.file}) but {b.shape[0]} in base "
                    f"({b.file}); set chat_vector.on_vocab_mismatch: keep_korean to keep the korean embeddings"
                )
            plan[name] = False
            continue
        for t in (b, i):
            if t.dtype != k.dtype:
                raise InputError(f"tensor {name!r}: dtype {k.dtype} in korean ({k.file}) but {t.dtype} in "
                                 f"{'base' if t is b else 'instruct'} ({t.file}); convert the checkpoints to one dtype")
        plan[name] = True
    return plan


def _norms(sq: dict[str, float]) -> dict[str, float]:
    out = {"total": math.sqrt(sum(sq.values()))}
    out.update({g: math.sqrt(v) for g, v in sorted(sq.items())})
    return out


def apply_chat_vector(korean: str | Path, base: str | Path, instruct: str | Path, out: str | Path,
                      params: ChatVectorParams) -> dict:
    """Write the merged model to `out` (atomically) and return the metrics dict."""
    t0 = time.perf_counter()
    ck, cb, ci = open_checkpoint(korean, "korean"), open_checkpoint(base, "base"), open_checkpoint(instruct, "instruct")
    try:
        plan = check_tensors(ck, cb, ci, params.on_vocab_mismatch == "keep_korean")
        vocab_mismatch = not all(plan.values())
        check_configs(ck.config, cb.config, ci.config, {"korean": ck.path, "base": cb.path, "instruct": ci.path},
                      skip_vocab=vocab_mismatch)
        check_tokenizer(model_dir(ck.path) if vocab_mismatch else model_dir(ci.path))
        first = next(iter(ck.tensors.values()))
        out_dtype = first.dtype if params.dtype == "auto" else OUT_DTYPES[params.dtype]
        if out_dtype not in MAX_FINITE:
            raise InputError(f"the korean model is {out_dtype}; set chat_vector.dtype to bf16, fp16 or fp32")
        for name, merge in plan.items():
            if merge and EMBED_RE.search(name):
                rows = ck.tensors[name].rows
                bad = [t for t in params.special_token_ids if t >= rows]
                if bad:
                    raise InputError(f"chat_vector.special_token_ids {bad} are outside tensor {name!r} ({rows} rows)")
        unused = [p for p in params.overrides if not any(re.search(p, n) for n in plan)]
        if unused:
            log.warning("chat_vector.overrides pattern(s) %s match no tensor", unused)
        if vocab_mismatch and params.special_token_ids:
            log.warning("vocab mismatch: the korean embeddings are kept, so special_token_ids are not copied")
        entries = [(name, out_dtype, ck.tensors[name].shape) for name in ck.tensors]
        shards = plan_shards(entries, params.shard_size_mb * 2**20)
        merger = Merger(ck, cb, ci, params, out_dtype, plan, lambda n: bool(EMBED_RE.search(n)), group_of,
                        CHUNK_ELEMENTS)
        total = sum(math.prod(e[2]) * ITEMSIZE[out_dtype] for e in entries)
        with atomic_dir(out) as tmp, tqdm(total=total, unit="B", unit_scale=True, desc="chat_vector",
                                           disable=None) as bar:
            merger.run(shards, tmp, bar.update)
            write_index(tmp, shards)
            write_model_files(tmp, model_dir(ck.path), model_dir(ci.path), ck.config, ci.config, out_dtype,
                              korean_tokenizer=vocab_mismatch)
    finally:
        for c in (ck, cb, ci):
            c.close()
    return {
        "tensors": len(entries),
        "parameters": sum(math.prod(e[2]) for e in entries),
        "ratio": params.ratio,
        "dtype": {v: k for k, v in OUT_DTYPES.items()}[out_dtype],
        "shards": len(shards),
        "output_bytes": total,
        "special_token_rows": merger.special_rows,
        "kept_korean_tensors": sum(not m for m in plan.values()),
        "vector_norm": _norms(merger.d_sq),
        "relative_change": _relative(merger.change_sq, merger.k_sq),
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _relative(change_sq: dict[str, float], k_sq: dict[str, float]) -> dict[str, float]:
    """||out - korean|| / ||korean||, overall and by group."""
    ch, k = _norms(change_sq), _norms(k_sq)
    return {g: (ch.get(g, 0.0) / v if v else 0.0) for g, v in k.items()}
