"""The streaming loop: read a block of rows from the three inputs, merge it, write it; I/O overlaps compute.

Each tensor is cut into blocks of whole rows (about CHUNK_ELEMENTS elements). One reader thread maps the next
block of the three inputs (a read-only memory map of just that block, unmapped right after use) while the main
thread merges the current block, and one writer thread appends finished blocks to the shard files in order; page
faults, writes and the numba kernel all run without the GIL, so on 2 cores the stage takes about max(I/O,
compute) rather than their sum. Two output buffers are allocated once and used alternately, so peak RSS is fixed:
about 2 x (3 mapped input + 1 output) blocks, plus three float64 blocks on the torch path.

The arithmetic is float64: the difference of two 16- or 32-bit floats is exact there and `korean + ratio * d` is
rounded only at 2^-53, so the rounding that matters is the final one to the output dtype (in float32, ratio=0.7
on bf16 weights leaves ~1 element in 10^6 off by one ulp from the float64 result, and on fp32 weights ~5%).
bf16 -> bf16 (the pipeline's case) runs in one fused numba pass (kernel.py); other dtypes use torch ops.
"""
from __future__ import annotations

import math
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from koblla.chat_vector.checkpoint import ITEMSIZE, Checkpoint
from koblla.chat_vector.params import ChatVectorParams
from koblla.chat_vector.writer import Entry, ShardWriter, shard_name
from koblla.errors import InputError

MAX_FINITE = {"BF16": 3.38e38, "F16": 65504.0, "F32": 3.40e38}  # below these no element can round to Inf
TORCH_NAMES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}


def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Raw little-endian bytes -> float64 values (exact for every supported dtype)."""
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return raw.view({"F16": np.float16, "F32": np.float32, "F64": np.float64}[dtype]).astype(np.float64)


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """float64 values that fit float32 exactly (instruct rows) -> raw bytes of `dtype`, rounded to nearest even."""
    if dtype == "BF16":
        u = values.astype(np.float32).view(np.uint32)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16).view(np.uint8)
    return values.astype({"F16": np.float16, "F32": np.float32}[dtype]).view(np.uint8)


class Merger:
    """Owns the reusable buffers and the running sums behind metrics/chat_vector.json."""

    def __init__(self, ck: Checkpoint, cb: Checkpoint, ci: Checkpoint, params: ChatVectorParams, out_dtype: str,
                 plan: dict[str, bool], is_embedding: Callable[[str], bool], group_of: Callable[[str], str],
                 chunk_elements: int):
        self.ck, self.cb, self.ci, self.params, self.out_dtype = ck, cb, ci, params, out_dtype
        self.plan, self.is_embedding, self.group_of = plan, is_embedding, group_of
        self.cap = max([chunk_elements] + [t.row_len for t in ck.tensors.values()])
        self.outs = [np.empty(self.cap * ITEMSIZE[out_dtype], dtype=np.uint8) for _ in range(2)]
        self._acc = None  # float64 torch buffers, made on first use by the torch path
        self.d_sq: dict[str, float] = {}  # sum of (instruct - base)^2 by group
        self.k_sq: dict[str, float] = {}  # sum of korean^2 by group
        self.change_sq: dict[str, float] = {}  # sum of (out - korean)^2 by group (before rounding)
        self.special_rows = 0
        self._writer: ShardWriter | None = None
        self._next_shard = 0

    # ---- the loop ------------------------------------------------------------------------------------------------
    def run(self, shards: list[list[Entry]], out_dir: Path, progress: Callable[[int], None]) -> None:
        blocks = []  # (shard, tensor name, first row, end row)
        for s, shard in enumerate(shards):
            for name, _, _ in shard:
                info = self.ck.tensors[name]
                if info.numel == 0:
                    continue  # nothing to read or write; its header entry is enough
                per = max(1, self.cap // info.row_len)
                blocks += [(s, name, r0, min(info.rows, r0 + per)) for r0 in range(0, info.rows, per)]
        writes: list[Future | None] = [None, None]
        try:
            with ThreadPoolExecutor(1, "cv-read") as reader, ThreadPoolExecutor(1, "cv-write") as writer:
                nxt = reader.submit(self._read, blocks[0]) if blocks else None
                for j, (s, name, r0, r1) in enumerate(blocks):
                    res = nxt.result()
                    (k, i, b), maps = res
                    res.clear()  # the finished future may still hold `res`: the arrays must be ours alone
                    if j + 1 < len(blocks):
                        nxt = reader.submit(self._read, blocks[j + 1])
                    if writes[j % 2] is not None:
                        writes[j % 2].result()  # this output buffer is free again
                    o = self._merge_block(name, r0, r1, k, i, b, self.outs[j % 2])
                    del k, i, b  # the arrays borrow the mappings: drop them, then unmap
                    for m in maps:
                        try:
                            m.close()
                        except BufferError:  # a view still alive somewhere: the mapping goes with it, later
                            pass
                    writes[j % 2] = writer.submit(self._write, shards, out_dir, s, o)
                    progress(o.nbytes)
                writer.submit(self._write, shards, out_dir, len(shards), None).result()
        finally:
            if self._writer is not None:
                self._writer.fh.close()  # on error; atomic_dir then removes the half-written temp dir

    def _read(self, block):
        _, name, r0, r1 = block
        parts, maps = [], []
        for c in (self.ck, self.ci, self.cb) if self.plan[name] else (self.ck,):
            arr, m = c.read_rows(c.tensors[name], r0, r1)
            parts.append(arr)
            maps += [m] if m is not None else []
        parts += [None] * (3 - len(parts))
        return [tuple(parts), maps]

    def _write(self, shards, out_dir: Path, s: int, o: np.ndarray | None) -> None:
        """Append `o` to shard `s`, first opening every shard up to it (in order; empty ones get just a header)."""
        while self._next_shard <= min(s, len(shards) - 1):
            if self._writer is not None:
                self._writer.close()
            self._writer = ShardWriter(out_dir / shard_name(self._next_shard, len(shards)), shards[self._next_shard])
            self._next_shard += 1
        if o is not None:
            self._writer.write(o)
        elif self._writer is not None:
            self._writer.close()
            self._writer = None

    # ---- one block -----------------------------------------------------------------------------------------------
    def _merge_block(self, name, r0, r1, k, i, b, out) -> np.ndarray:
        ik, ii, ib = self.ck.tensors[name], self.ci.tensors[name], self.cb.tensors[name]
        ratio = self.params.ratio_for(name)
        o = out[: (r1 - r0) * ik.row_len * ITEMSIZE[self.out_dtype]]
        if ik.dtype == "BF16" and self.out_dtype == "BF16":
            kk, dd = self._fused(k, i, b, o, ratio)
        else:
            kk, dd = self._torch(k, i, b, o, ratio, ik.dtype)
        if not (math.isfinite(kk) and math.isfinite(dd)):
            self._name_nonfinite(name, [(ik, k, "korean"), (ii, i, "instruct"), (ib, b, "base")], r0)
            # finite inputs whose float32 squares overflowed (|x| > 1.8e19): redo the sums in float64
            kk = float((decode(k, ik.dtype) ** 2).sum())
            dd = 0.0 if i is None else float(((decode(i, ik.dtype) - decode(b, ik.dtype)) ** 2).sum())
        if math.sqrt(kk) + abs(ratio) * math.sqrt(dd) >= MAX_FINITE[self.out_dtype]:
            self._check_output(name, o, r0, r1)  # only then can a finite input round to Inf
        ch = ratio * ratio * dd
        if i is not None and self.is_embedding(name):
            rows = [t - r0 for t in sorted(set(self.params.special_token_ids)) if r0 <= t < r1]
            if rows:
                ch += self._copy_special_rows(name, rows, ik.row_len, k, i, b, o, ratio, ik.dtype)
        g = self.group_of(name)
        for acc, v in ((self.d_sq, dd), (self.k_sq, kk), (self.change_sq, ch)):
            acc[g] = acc.get(g, 0.0) + v
        return o

    @staticmethod
    def _fused(k, i, b, o, ratio) -> tuple[float, float]:
        from koblla.chat_vector.kernel import copy_bf16, merge_bf16

        if i is None:
            return copy_bf16(k.view(np.uint16), o.view(np.uint16))
        return merge_bf16(k.view(np.uint16), i.view(np.uint16), b.view(np.uint16), o.view(np.uint16), ratio)

    def _torch(self, k, i, b, o, ratio, in_dtype: str) -> tuple[float, float]:
        """Same arithmetic as the fused kernel, as torch ops on float64 buffers (fp16/fp32/mixed dtypes)."""
        import torch

        if self._acc is None:
            self._acc = [torch.empty(self.cap, dtype=torch.float64) for _ in range(3)]
        def t(raw, dt):  # a torch view of raw bytes; the read-only input maps are only ever read
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                return torch.from_numpy(raw).view(getattr(torch, TORCH_NAMES[dt]))

        m = k.nbytes // ITEMSIZE[in_dtype]
        K, I, B = (a[:m] for a in self._acc)
        ot = t(o, self.out_dtype)
        K.copy_(t(k, in_dtype))
        kk = float(torch.dot(K, K))
        if i is None:
            ot.copy_(K)
            return kk, 0.0
        I.copy_(t(i, in_dtype))
        B.copy_(t(b, in_dtype))
        torch.sub(I, B, out=B)  # d = instruct - base: exact in float64
        dd = float(torch.dot(B, B))
        B.mul_(ratio).add_(K)  # korean + ratio * d, in this order, as the fused kernel does
        ot.copy_(B)  # the one rounding to the output dtype
        return kk, dd

    def _copy_special_rows(self, name, rows, rl, k, i, b, o, ratio, in_dtype) -> float:
        """Put instruct's rows into the output; returns the change to sum (out - korean)^2 this makes."""
        isz, osz = ITEMSIZE[in_dtype], ITEMSIZE[self.out_dtype]
        delta = 0.0
        for row in rows:
            sl = slice(row * rl * isz, (row + 1) * rl * isz)
            kv, iv, bv = decode(k[sl], in_dtype), decode(i[sl], in_dtype), decode(b[sl], in_dtype)
            delta += float(((iv - kv) ** 2).sum()) - ratio * ratio * float(((iv - bv) ** 2).sum())
            dst = o[row * rl * osz:(row + 1) * rl * osz]
            dst[:] = i[sl] if in_dtype == self.out_dtype else encode(iv, self.out_dtype)
            if not np.isfinite(decode(dst, self.out_dtype)).all():
                raise InputError(f"tensor {name!r}: instruct row {row} does not fit {self.out_dtype}")
            self.special_rows += 1
        return delta

    def _check_output(self, name, o, r0, r1) -> None:
        if not np.isfinite(decode(o, self.out_dtype)).all():
            raise InputError(f"tensor {name!r}: merged values in rows {r0}-{r1} overflow {self.out_dtype}; "
                             "lower the ratio or choose a wider chat_vector.dtype")

    @staticmethod
    def _name_nonfinite(name, tensors, r0) -> None:
        for info, raw, role in tensors:
            if raw is None:
                continue
            bad = np.flatnonzero(~np.isfinite(decode(raw, info.dtype)))
            if len(bad):
                raise InputError(f"tensor {name!r} of the {role} model ({info.file}) has NaN/Inf (first at flat index "
                                 f"{r0 * info.row_len + int(bad[0])}); fix or re-export that checkpoint")
