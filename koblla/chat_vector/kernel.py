"""The arithmetic on one block of raw bytes: out = korean + ratio * (instruct - base), in float64, rounded once.

The difference of two bf16/fp16/fp32 values is exact in float64 and `korean + ratio * d` is rounded only at 2^-53,
so the one rounding that matters is the last: float64 -> float32 -> dtype, to nearest even, as `torch.Tensor.to`
does. bf16 (the pipeline's dtype) runs in one fused numba pass, 0.5 ns per element where the same numpy array ops
take 41 ns (docs/chat_vector.md); fp16/fp32 use those numpy float64 ops (same result, slower).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# numba's on-disk cache must stay out of the package dir: DVC hashes koblla/chat_vector as a stage dependency.
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                                             / "koblla-numba"))
from numba import njit  # noqa: E402

NUMPY = {"F16": np.float16, "F32": np.float32}


def decode(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Raw little-endian bytes of BF16/F16/F32 -> float64 values (exact)."""
    if dtype == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return raw.view(NUMPY[dtype]).astype(np.float64)


@njit(fastmath={"reassoc"})
def _add_sq(s, x):
    # Only these metric sums may be reassociated (so the loop vectorizes); the merge itself carries no fast-math
    # flag, so it is evaluated exactly as written, with no FMA contraction.
    return s + x * x


@njit(inline="always")
def _f32(bf16):
    return np.uint32(np.uint32(bf16) << np.uint32(16)).view(np.float32)


@njit(cache=True, nogil=True)
def _merge_bf16(k, i, b, out, ratio):
    # The sums are float32 partial sums (relative error ~1e-5): float64 sums stop the loop vectorizing well.
    kk = np.float32(0.0)
    dd = np.float32(0.0)
    for j in range(k.shape[0]):
        kf, i_f, bf = _f32(k[j]), _f32(i[j]), _f32(b[j])
        kk = _add_sq(kk, kf)
        dd = _add_sq(dd, i_f - bf)
        u = np.float32(np.float64(kf) + ratio * (np.float64(i_f) - np.float64(bf))).view(np.uint32)
        out[j] = np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    return np.float64(kk), np.float64(dd)


def merge_block(k: np.ndarray, i: np.ndarray, b: np.ndarray, out: np.ndarray, ratio: float,
                dtype: str) -> tuple[float, float]:
    """Merge raw byte blocks k, i, b of `dtype` into `out` (same size); returns (sum k^2, sum (i - b)^2)."""
    if dtype == "BF16":
        return _merge_bf16(k.view(np.uint16), i.view(np.uint16), b.view(np.uint16), out.view(np.uint16), ratio)
    kv, d = decode(k, dtype), decode(i, dtype) - decode(b, dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow and NaN are reported by the caller
        out.view(NUMPY[dtype])[:] = (kv + ratio * d).astype(np.float32)
    return float(kv @ kv), float(d @ d)
