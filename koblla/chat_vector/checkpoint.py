"""Find a model's weight files and read its tensors a block of rows at a time, never a whole model.

Safetensors shards are opened with `safetensors.safe_open` (which validates the header) and their data is then
read a block of rows at a time through a short-lived memory map of just that block, at the offsets the header
gives: a safe_open handle (default mmap backend) keeps every page touched in RSS while it lives (2.8 GiB per 1B
model), and `get_slice` on its "pread" backend re-reads the whole tensor for every slice (measured: 327 s for one
1B model in 1 M-element slices).
A Meta `consolidated.00.pth` is accepted only through `torch.load(weights_only=True, mmap=True)`; its keys are
mapped to HF names and q/k are permuted the way torchtune's `tune_to_hf` does.
"""
from __future__ import annotations

import json
import logging
import math
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

from koblla.errors import InputError

log = logging.getLogger(__name__)

ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}  # safetensors dtype codes we read and write
MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit; a bigger "header" means a corrupt or foreign file


@dataclass
class TensorInfo:
    name: str
    dtype: str  # safetensors code: BF16, F16, F32, F64
    shape: tuple[int, ...]
    file: Path
    start: int = 0  # absolute byte offset of the data in `file` (safetensors only)
    tensor: Any = None  # the mmap-backed tensor (.pth only)
    permute_heads: int | None = None  # q/k of a Meta checkpoint: heads to permute into HF's rotary layout

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def row_len(self) -> int:
        return math.prod(self.shape[1:]) if len(self.shape) > 1 else 1

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1


@dataclass
class Checkpoint:
    """One input model: its tensors by HF name and its config.json (or one derived from Meta's params.json)."""

    role: str  # "korean", "base", "instruct": used in every message
    path: Path
    tensors: dict[str, TensorInfo]
    config: dict[str, Any]
    _handles: dict[Path, int] = field(default_factory=dict, repr=False)  # file -> OS file descriptor
    _permuted: tuple[str, Any] | None = field(default=None, repr=False)

    def read_rows(self, info: TensorInfo, r0: int, r1: int) -> tuple[np.ndarray, mmap.mmap | None]:
        """The raw bytes of rows [r0, r1) of `info` (uint8) and the mapping behind them, to close after use.

        Each block gets its own short-lived read-only mapping: the page cache is read in place (no copy; 1.8 s less
        CPU than pread for a 1B model) and, once closed, no page stays in RSS.
        """
        if info.tensor is not None:
            return self._pth_rows(info, r0, r1), None
        item = ITEMSIZE[info.dtype]
        nbytes = (r1 - r0) * info.row_len * item
        fd = self._handles.get(info.file)
        if fd is None:
            fd = self._handles[info.file] = os.open(info.file, os.O_RDONLY)
        start = info.start + r0 * info.row_len * item
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        try:
            # MAP_POPULATE: the reader thread maps all pages at once, so the merging thread takes no page faults
            m = mmap.mmap(fd, start - aligned + nbytes, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                          prot=mmap.PROT_READ, offset=aligned)
        except (OSError, ValueError) as e:
            raise InputError(f"{info.file}: cannot read tensor {info.name!r} ({self.role} model): {e}") from None
        return np.frombuffer(m, dtype=np.uint8, count=nbytes, offset=start - aligned), m

    def _pth_rows(self, info: TensorInfo, r0: int, r1: int) -> np.ndarray:
        import torch

        t = info.tensor
        if info.permute_heads:
            if self._permuted is None or self._permuted[0] != info.name:
                dim = t.shape[1]
                head_dim = t.shape[0] // info.permute_heads
                p = t.view(info.permute_heads, head_dim // 2, 2, dim).transpose(1, 2).reshape(t.shape[0], dim)
                self._permuted = (info.name, p.contiguous())
            t = self._permuted[1]
        return t.reshape(info.rows, info.row_len)[r0:r1].contiguous().view(torch.uint8).numpy().reshape(-1)

    def close(self) -> None:
        for fd in self._handles.values():
            os.close(fd)
        self._handles.clear()
        self._permuted = None


def _read_json(path: Path, role: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"{path}: cannot read the {role} model's JSON ({e})") from None


def read_safetensors_header(path: Path, role: str) -> dict[str, TensorInfo]:
    """Tensors of one .safetensors file with absolute data offsets; the header is validated by safe_open too."""
    try:
        with safe_open(str(path), framework="numpy") as f:  # validates offsets, dtypes, overlaps (no torch import)
            keys = set(f.keys())
    except Exception as e:  # safetensors raises its own error types; name the file either way
        raise InputError(f"{path}: not a valid safetensors file ({role} model): {e}") from None
    size = path.stat().st_size
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
            raise InputError(f"{path}: corrupt safetensors header length {n} ({role} model)")
        header = json.loads(fh.read(n))
    data_start = 8 + n
    out: dict[str, TensorInfo] = {}
    for name in sorted(keys, key=lambda k: header[k]["data_offsets"][0]):
        h = header[name]
        if h["dtype"] not in ITEMSIZE:
            raise InputError(
                f"{path}: tensor {name!r} has dtype {h['dtype']}; supported: {', '.join(ITEMSIZE)} ({role} model)"
            )
        out[name] = TensorInfo(name, h["dtype"], tuple(h["shape"]), path, data_start + h["data_offsets"][0])
    return out


def _weight_files(path: Path, role: str) -> tuple[list[Path], dict[str, str] | None]:
    """The safetensors shards of a model dir (and the index's weight_map), or [the .pth] for a Meta checkpoint."""
    if path.is_file():
        if path.suffix in (".safetensors", ".pth"):
            return [path], None
        raise InputError(f"{path}: expected a model directory, a .safetensors or a .pth file ({role} model)")
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, role).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(f"{index}: has no weight_map ({role} model)")
        files = [path / f for f in dict.fromkeys(weight_map.values())]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise InputError(
                f"{index} names shard(s) that do not exist: {', '.join(str(m) for m in missing)} ({role} model); "
                "re-download or re-export the checkpoint"
            )
        return files, weight_map
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"], None
    shards = sorted(p for p in path.glob("*.safetensors") if not p.name.startswith("adapter"))
    if shards:
        return shards, None
    for pth in (path / "original" / "consolidated.00.pth", path / "consolidated.00.pth"):
        if pth.is_file():
            return [pth], None
    raise InputError(
        f"{path}: no model weights found ({role} model): expected model.safetensors.index.json, *.safetensors "
        "or original/consolidated.00.pth"
    )


def _load_pth(path: Path, role: str, params: dict) -> dict[str, TensorInfo]:
    import torch

    codes = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64"}
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # UnpicklingError for pickled code, RuntimeError for a truncated file, ...
        raise InputError(
            f"{path}: refused to load the {role} model's .pth with weights_only=True: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}. Only plain tensor checkpoints are accepted "
            "(a pickle that carries code is never executed); convert it to safetensors from a trusted source."
        ) from None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise InputError(f"{path}: expected a dict of tensors in the {role} model's .pth")
    from torchtune.models.convert_weights import _FROM_HF, _FROM_META, get_mapped_key

    tune_to_hf = {v: k for k, v in _FROM_HF.items()}
    n_heads, n_kv = params.get("n_heads"), params.get("n_kv_heads", params.get("n_heads"))
    out: dict[str, TensorInfo] = {}
    for meta_key, t in sd.items():
        if meta_key.endswith("rope.freqs"):
            continue  # Meta's precomputed RoPE table; HF recomputes it
        try:
            hf_key = get_mapped_key(get_mapped_key(meta_key, _FROM_META), tune_to_hf)
        except Exception:
            raise InputError(f"{path}: unknown Meta tensor {meta_key!r} in the {role} model") from None
        heads = n_heads if "q_proj" in hf_key else n_kv if "k_proj" in hf_key else None
        if t.dtype not in codes:
            raise InputError(f"{path}: tensor {meta_key!r} has unsupported dtype {t.dtype} ({role} model)")
        out[hf_key] = TensorInfo(hf_key, codes[t.dtype], tuple(t.shape), path, tensor=t, permute_heads=heads)
    return out


def _config_from_meta(params: dict) -> dict:
    return {"hidden_size": params.get("dim"), "num_hidden_layers": params.get("n_layers"),
            "num_attention_heads": params.get("n_heads"), "num_key_value_heads": params.get("n_kv_heads"),
            "vocab_size": params.get("vocab_size"), "rope_theta": params.get("rope_theta")}


def open_checkpoint(path: str | os.PathLike, role: str) -> Checkpoint:
    """Index every tensor of a model (headers only) so shapes, dtypes and keys can be checked before any work."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: the {role} model does not exist")
    files, weight_map = _weight_files(path, role)
    model_dir = path if path.is_dir() else path.parent
    if files[0].suffix == ".pth":
        pdir = files[0].parent
        params = _read_json(pdir / "params.json", role) if (pdir / "params.json").is_file() else {}
        if not params.get("n_heads"):
            raise InputError(f"{pdir / 'params.json'}: needed (n_heads, n_kv_heads) to convert the {role} .pth")
        tensors = _load_pth(files[0], role, params)
        cfg_path = model_dir / "config.json"
        config = _read_json(cfg_path, role) if cfg_path.is_file() else _config_from_meta(params)
        return Checkpoint(role, path, tensors, config)
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        for name, info in read_safetensors_header(f, role).items():
            if name in tensors:
                raise InputError(f"{f}: tensor {name!r} also appears in {tensors[name].file} ({role} model)")
            tensors[name] = info
    if weight_map is not None:
        for name, fname in weight_map.items():
            if name not in tensors:
                raise InputError(
                    f"{model_dir / fname}: the index names tensor {name!r} but the shard lacks it ({role} model)"
                )
            if tensors[name].file.name != Path(fname).name:
                raise InputError(f"{model_dir}: index puts {name!r} in {fname} but it is in {tensors[name].file.name}")
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise InputError(f"{cfg_path}: missing; the {role} model needs its HF config.json")
    return Checkpoint(role, path, tensors, _read_json(cfg_path, role))
