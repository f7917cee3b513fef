"""The fused bf16 kernel: decode three bf16 blocks, korean + ratio * (instruct - base) in float64, round to bf16.

One pass over memory instead of the ~9 that separate torch ops need (decode x3, sub, mul, add, two norms, round):
on these CPUs each torch op costs about as much as reading the data, so fusing is what brings the stage near the
I/O floor. The rounding matches `torch.Tensor.to(torch.bfloat16)` of the float64 value bit for bit (float64 ->
float32 round-to-nearest-even, then float32 -> bf16 round-to-nearest-even), so the torch path used for fp16/fp32
and the tests' float64 reference agree with it exactly. Compiled once and cached on disk (numba cache=True).
"""
from __future__ import annotations

import os
from pathlib import Path

# Keep numba's on-disk cache out of the package dir: DVC hashes koblla/chat_vector as a dependency.
_CACHE_HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(_CACHE_HOME / "koblla-numba"))

import numpy as np  # noqa: E402
from llvmlite import ir  # noqa: E402
from numba import njit, types  # noqa: E402
from numba.extending import intrinsic  # noqa: E402


@intrinsic
def _u32_as_f32(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


@intrinsic
def _f32_as_u32(typingctx, x):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@njit(inline="always")
def _bf16_f32(u):
    return _u32_as_f32(np.uint32(u) << np.uint32(16))


@njit(inline="always")
def _to_bf16(x):
    u = _f32_as_u32(np.float32(x))  # float64 -> float32, round to nearest even (as torch does first)
    r = np.uint16((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    return np.uint16(0x7FC0) if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000) else r  # NaN as torch writes it


@njit(fastmath={"reassoc"})
def _add_sq(s, x):
    # Only these sums may be reassociated (so the loop vectorizes); the merge arithmetic itself carries no
    # fast-math flag, so it is evaluated exactly as written, with no FMA contraction.
    return s + x * x


@njit(cache=True, nogil=True)
def merge_bf16(k, i, b, out, ratio):
    """out[j] = bf16(k[j] + ratio * (i[j] - b[j])) on uint16 bit patterns; returns (sum k^2, sum (i-b)^2).

    The merged value is computed in float64. The sums feed only the metrics and the NaN/Inf check, so they are
    float32 (vectorized partial sums; relative error ~1e-5 over a 2 M-element block): float64 sums, or sums over
    sub-blocks, stop this loop from vectorizing well and double or quadruple its time.
    """
    kk = np.float32(0.0)
    dd = np.float32(0.0)
    for j in range(k.shape[0]):
        kf, i_f, bf = _bf16_f32(k[j]), _bf16_f32(i[j]), _bf16_f32(b[j])
        kk = _add_sq(kk, kf)
        dd = _add_sq(dd, i_f - bf)
        out[j] = _to_bf16(np.float64(kf) + ratio * (np.float64(i_f) - np.float64(bf)))
    return np.float64(kk), np.float64(dd)


@njit(cache=True, nogil=True)
def copy_bf16(k, out):
    """The korean values as they are (a kept tensor); returns (sum k^2, 0)."""
    kk = np.float32(0.0)
    for j in range(k.shape[0]):
        kk = _add_sq(kk, _bf16_f32(k[j]))
        out[j] = k[j]
    return np.float64(kk), 0.0
