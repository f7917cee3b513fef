"""Chat vector: out = korean + ratio * (instruct - base), streamed block by block into sharded safetensors.

A block job maps a block of rows of the three inputs, merges it (kernel.py) into a reusable buffer and `pwrite`s it
into the output shard, whose header was written first. Two threads run jobs, at most WINDOW in flight, so memory is
fixed whatever the model size; the temp dir replaces `out` only when complete. docs/chat_vector.md says why.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import resource
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from koblla.atomic import atomic_dir, write_json
from koblla.chat_vector.checkpoint import ITEMSIZE, Checkpoint, Tensor, check_configs, check_tensors, open_checkpoint
from koblla.chat_vector.kernel import decode, merge_block
from koblla.chat_vector.params import ChatVectorParams
from koblla.dtypes import SAFETENSORS_TO_LONG, SAFETENSORS_TO_SHORT
from koblla.errors import InputError
from koblla.finetune.checkpoint import shard_name

log = logging.getLogger(__name__)

CHUNK_ELEMENTS = 1 << 21  # elements per block (4 MiB of bf16): larger blocks cut per-block overhead, cost memory
WINDOW = 4  # blocks in flight: two being merged, two queued
EMBED_RE = re.compile(r"(embed_tokens|lm_head)\.weight$")
MAX_FINITE = {"BF16": 3.38e38, "F16": 65504.0, "F32": 3.40e38}  # below these no merged value can round to Inf
# The tokenizer side comes from the instruct model (chat template, eos <|eot_id|>); torchtune reads
# original/tokenizer.model. Never original/consolidated.00.pth: a second full copy of the weights.
INSTRUCT_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                  "original/tokenizer.model", "original/params.json")


def group_of(name: str) -> str:
    """Metric group of an HF Llama tensor name."""
    if EMBED_RE.search(name):
        return "embeddings"
    return next((g for key, g in (("norm", "norms"), ("attn", "attention"), ("mlp", "mlp")) if key in name), "other")


def _check_params(ck: Checkpoint, ci: Checkpoint, params: ChatVectorParams) -> None:
    for name, t in ck.tensors.items():
        bad = [s for s in params.special_token_ids if s >= t.rows]
        if EMBED_RE.search(name) and bad:
            raise InputError(f"chat_vector.special_token_ids {bad} are outside tensor {name!r} ({t.rows} rows)")
    unused = [p for p in params.overrides if not any(re.search(p, n) for n in ck.tensors)]
    if unused:
        log.warning("chat_vector.overrides pattern(s) %s match no tensor", unused)
    if not ((ci.path / "tokenizer.json").is_file() or (ci.path / "original" / "tokenizer.model").is_file()):
        raise InputError(f"{ci.path}: no tokenizer.json or original/tokenizer.model to give the merged model")


def _create_shards(out: Path, tensors: list[Tensor], shard_bytes: int) -> tuple[list[int], dict, dict]:
    """Split greedily in file order (a shard exceeds `shard_bytes` only when one tensor alone does), write each
    shard's header and size the file; returns the fds, name -> (fd, data offset) and the index's weight_map."""
    shards: list[list[Tensor]] = [[]]
    for t in tensors:
        if shards[-1] and sum(x.nbytes for x in shards[-1]) + t.nbytes > shard_bytes:
            shards.append([])
        shards[-1].append(t)
    fds, where, weight_map = [], {}, {}
    for s, shard in enumerate(shards):
        offsets = [sum(t.nbytes for t in shard[:j]) for j in range(len(shard) + 1)]
        header = {"__metadata__": {"format": "pt"}}
        header.update({t.name: {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": offsets[j:j + 2]}
                       for j, t in enumerate(shard)})
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
        fname = shard_name(s + 1, len(shards))
        fds.append(os.open(out / fname, os.O_WRONLY | os.O_CREAT, 0o666))
        os.write(fds[-1], len(raw).to_bytes(8, "little") + raw)
        os.ftruncate(fds[-1], 8 + len(raw) + offsets[-1])
        where.update({t.name: (fds[-1], 8 + len(raw) + offsets[j]) for j, t in enumerate(shard)})
        weight_map.update({t.name: fname for t in shard})
    return fds, where, weight_map


def _merge_rows(name: str, c: tuple[Checkpoint, Checkpoint, Checkpoint], r0: int, r1: int, dest: tuple[int, int],
                params: ChatVectorParams, buf: np.ndarray) -> tuple[str, float, float, float, int, int]:
    """One block job: merge rows [r0, r1) of tensor `name` and write them; returns its metric sums."""
    k, i, b = (m.tensors[name].read_rows(r0, r1) for m in c)
    t, ratio = c[0].tensors[name], params.ratio_for(name)
    o = buf[:k.nbytes]
    kk, dd = merge_block(k, i, b, o, ratio, t.dtype)
    if not (math.isfinite(kk) and math.isfinite(dd)):
        for m, raw in zip(c, (k, i, b), strict=True):
            bad = np.flatnonzero(~np.isfinite(decode(raw, t.dtype)))
            if len(bad):
                first = r0 * t.row_bytes // ITEMSIZE[t.dtype] + int(bad[0])
                raise InputError(f"tensor {name!r} of the {m.role} model ({m.tensors[name].file}) has NaN/Inf (first "
                                 f"at flat index {first}); fix or re-export that checkpoint")
        kk, dd = float((decode(k, t.dtype) ** 2).sum()), float(((decode(i, t.dtype) - decode(b, t.dtype)) ** 2).sum())
    if math.sqrt(kk) + abs(ratio) * math.sqrt(dd) >= MAX_FINITE[t.dtype] and not np.isfinite(decode(o, t.dtype)).all():
        raise InputError(f"tensor {name!r}: merged values in rows {r0}-{r1} overflow {t.dtype}; lower the ratio")
    change = ratio * ratio * dd
    special = [s for s in sorted(set(params.special_token_ids)) if r0 <= s < r1] if EMBED_RE.search(name) else []
    for s in special:  # instruct's row verbatim (the Chat Vector paper's fix for chat tokens base never trained)
        sl = slice((s - r0) * t.row_bytes, (s - r0 + 1) * t.row_bytes)
        kv, iv, bv = (decode(x[sl], t.dtype) for x in (k, i, b))
        change += float(((iv - kv) ** 2).sum()) - ratio * ratio * float(((iv - bv) ** 2).sum())
        o[sl] = i[sl]
    if os.pwrite(dest[0], o, dest[1] + r0 * t.row_bytes) != o.nbytes:
        raise OSError(f"short write of tensor {name!r}")
    return group_of(name), kk, dd, change, len(special), o.nbytes


def _run(jobs: list[tuple], cap: int, bar: tqdm) -> list[tuple]:
    """Run the block jobs on two threads, at most WINDOW in flight with a `cap`-byte output buffer each; returns
    their results in order. An error in one is raised here once the jobs in flight have ended."""
    bufs, done, pending = [np.empty(cap, dtype=np.uint8) for _ in range(WINDOW)], [], deque()
    with ThreadPoolExecutor(2, "chat_vector") as pool:
        for j, job in enumerate(jobs + [None] * WINDOW):
            if j >= WINDOW:  # job j - WINDOW must end before job j reuses its buffer
                done.append(pending.popleft().result())
                bar.update(done[-1][-1])
            if job is not None:
                pending.append(pool.submit(_merge_rows, *job, bufs[j % WINDOW]))
    return done


def _norms(sq: dict[str, float]) -> dict[str, float]:
    return {"total": math.sqrt(sum(sq.values())), **{g: math.sqrt(v) for g, v in sorted(sq.items())}}


def _write_model_files(out: Path, ck: Checkpoint, ci: Checkpoint, dtype: str) -> None:
    """korean's config.json with instruct's eos and the weights' dtype; instruct's tokenizer side, as it is."""
    config = {**ck.config, "eos_token_id": ci.config.get("eos_token_id")}
    config["torch_dtype" if "torch_dtype" in config and "dtype" not in config else "dtype"] = SAFETENSORS_TO_LONG[dtype]
    write_json(out / "config.json", config)
    for name in INSTRUCT_FILES:
        if not (ci.path / name).is_file():
            log.warning("%s: absent, the merged model will lack %s", ci.path / name, name)
            continue
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ci.path / name, out / name)


def apply_chat_vector(korean: str | Path, base: str | Path, instruct: str | Path, out: str | Path,
                      params: ChatVectorParams) -> dict:
    """Write the merged model to `out` (atomically) and return the metrics dict."""
    t0 = time.perf_counter()
    ck, cb, ci = open_checkpoint(korean, "korean"), open_checkpoint(base, "base"), open_checkpoint(instruct, "instruct")
    c = (ck, ci, cb)  # the order the block jobs read them in: k, i, b
    check_tensors(ck, cb, ci)
    check_configs(ck, cb, ci)
    _check_params(ck, ci, params)
    tensors = list(ck.tensors.values())
    blocks = [(t.name, r0, min(t.rows, r0 + per)) for t in tensors if t.nbytes
              for per in [max(1, CHUNK_ELEMENTS * ITEMSIZE[t.dtype] // t.row_bytes)] for r0 in range(0, t.rows, per)]
    cap = max([(r1 - r0) * ck.tensors[n].row_bytes for n, r0, r1 in blocks], default=0)
    total = sum(t.nbytes for t in tensors)
    with atomic_dir(out) as tmp, tqdm(total=total, unit="B", unit_scale=True, desc="chat_vector", disable=None) as bar:
        fds, where, weight_map = _create_shards(tmp, tensors, params.shard_size_mb * 2**20)
        try:
            done = _run([(n, c, r0, r1, where[n], params) for n, r0, r1 in blocks], cap, bar)
        finally:
            for fd in fds:
                os.close(fd)
        write_json(tmp / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
        _write_model_files(tmp, ck, ci, tensors[0].dtype)
    sums: dict[str, dict[str, float]] = {"d": {}, "k": {}, "change": {}}
    for group, kk, dd, change, _, _ in done:
        for key, v in (("d", dd), ("k", kk), ("change", change)):
            sums[key][group] = sums[key].get(group, 0.0) + v
    change, k = _norms(sums["change"]), _norms(sums["k"])
    return {
        "tensors": len(tensors),
        "parameters": sum(math.prod(t.shape) for t in tensors),
        "ratio": params.ratio,
        "dtype": SAFETENSORS_TO_SHORT[tensors[0].dtype],
        "shards": len(fds),
        "output_bytes": total,
        "special_token_rows": sum(r[4] for r in done),
        "vector_norm": _norms(sums["d"]),
        "relative_change": {g: (change.get(g, 0.0) / v if v else 0.0) for g, v in k.items()},
        "seconds": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
