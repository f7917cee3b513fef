"""The three input models: their safetensors shards, tensor headers and config.json, and the checks between them.

Every check that headers and configs allow (keys, shapes, dtypes, architecture, eos) runs before a byte is written.
`safe_open` validates each shard (offsets, dtypes, file size); the data offsets are then read from that same header,
so the merge can map just one block of a tensor at a time (docs/chat_vector.md says why not `get_slice`).
"""
from __future__ import annotations

import json
import math
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open

from koblla.errors import InputError
from koblla.finetune.checkpoint import weight_files

ITEMSIZE = {"BF16": 2, "F16": 2, "F32": 4}  # the dtypes a chat vector is computed for
ARCH_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
               "rope_theta")


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # safetensors code
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset of the data in `file`

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self) -> int:
        return math.prod(self.shape[1:]) * ITEMSIZE[self.dtype]

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    def read_rows(self, r0: int, r1: int) -> np.ndarray:
        """Raw bytes of rows [r0, r1), from a read-only map of just those pages (unmapped when the array dies)."""
        start, n = self.start + r0 * self.row_bytes, (r1 - r0) * self.row_bytes
        pad = start % mmap.ALLOCATIONGRANULARITY
        with open(self.file, "rb") as fh:  # MAP_POPULATE: one syscall maps every page, no faults while merging
            m = mmap.mmap(fh.fileno(), pad + n, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, prot=mmap.PROT_READ,
                          offset=start - pad)
        return np.frombuffer(m, dtype=np.uint8, count=n, offset=pad)


@dataclass
class Checkpoint:
    role: str  # "korean", "base" or "instruct": named in every message
    path: Path
    tensors: dict[str, Tensor]
    config: dict[str, Any]


def _read_json(path: Path, role: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the {role} model's JSON ({e})") from None


def _shard_tensors(path: Path, role: str) -> dict[str, Tensor]:
    try:
        with safe_open(path, framework="numpy"):
            pass
    except Exception as e:  # safetensors raises its own error types; name the file either way
        raise InputError(f"{path}: not a valid safetensors file ({role} model): {e}") from None
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    for name, h in header.items():
        if h["dtype"] not in ITEMSIZE:
            raise InputError(f"{path}: tensor {name!r} has dtype {h['dtype']}; supported: {', '.join(ITEMSIZE)} "
                             f"({role} model)")
    return {name: Tensor(name, h["dtype"], tuple(h["shape"]), path, 8 + n + h["data_offsets"][0])
            for name, h in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0])}


def open_checkpoint(path: str | Path, role: str) -> Checkpoint:
    """Index every tensor of an HF model dir (headers only): model.safetensors.index.json or *.safetensors."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: the {role} model dir does not exist")
    names, weight_map = weight_files(path, role)
    files = [path / f for f in names]
    tensors: dict[str, Tensor] = {}
    for f in files:
        for name, t in _shard_tensors(f, role).items():
            if name in tensors:
                raise InputError(f"{f}: tensor {name!r} also appears in {tensors[name].file} ({role} model)")
            tensors[name] = t
    for name, fname in (weight_map or {}).items():
        if name not in tensors or tensors[name].file.name != Path(fname).name:
            raise InputError(f"{path / fname}: the index puts tensor {name!r} in this shard but it is not there "
                             f"({role} model)")
    return Checkpoint(role, path, tensors, _read_json(path / "config.json", role))


def check_tensors(ck: Checkpoint, cb: Checkpoint, ci: Checkpoint) -> None:
    """Same names, shapes and dtypes in all three models; errors name the tensor and the files."""
    for a, b in ((ck, cb), (cb, ck), (ck, ci), (ci, ck)):
        missing = [n for n in a.tensors if n not in b.tensors]
        if missing:
            shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if missing[5:] else "")
            raise InputError(f"tensor(s) {shown} of the {a.role} model ({a.tensors[missing[0]].file}) are missing "
                             f"from the {b.role} model ({b.path}); all three models must have the same tensors")
    for name in ck.tensors:
        ts = [(m.role, m.tensors[name]) for m in (ck, cb, ci)]
        if len({(t.dtype, t.shape) for _, t in ts}) > 1:
            detail = ", ".join(f"{role} {t.dtype} {list(t.shape)} ({t.file})" for role, t in ts)
            raise InputError(f"tensor {name!r} differs between the models: {detail}; a chat vector needs the same "
                             "shape and dtype in all three models")


def _field(config: dict, field: str) -> Any:
    if field == "rope_theta" and "rope_theta" not in config:
        return (config.get("rope_parameters") or {}).get("rope_theta")  # transformers 5 nests it here
    return config.get(field)


def _ids(v: Any) -> list[int]:
    return [] if v is None else [int(x) for x in (v if isinstance(v, list) else [v])]


def check_configs(ck: Checkpoint, cb: Checkpoint, ci: Checkpoint) -> None:
    """Fail naming the field when the three config.json describe different architectures."""
    for field in ARCH_FIELDS:
        values = [_field(c.config, field) for c in (ck, cb, ci)]
        if any(v is not None for v in values) and (None in values or len({float(v) for v in values}) > 1):
            detail = ", ".join(f"{c.role}={v!r} ({c.path})" for c, v in zip((ck, cb, ci), values, strict=True))
            raise InputError(f"config field {field!r} differs between the models: {detail}; "
                             "a chat vector only applies across checkpoints of one architecture")
    # korean was fine-tuned from base, so they share base's eos; instruct's eos (<|eot_id|>) becomes the output's.
    if _ids(ck.config.get("eos_token_id")) != _ids(cb.config.get("eos_token_id")):
        raise InputError(f"config field 'eos_token_id' differs between korean ({ck.config.get('eos_token_id')!r}, "
                         f"{ck.path}) and base ({cb.config.get('eos_token_id')!r}, {cb.path}): the korean model "
                         "should be fine-tuned from base")
