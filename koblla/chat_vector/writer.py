"""Write sharded safetensors header first, then stream each tensor's bytes in order.

Every output shape and dtype is known from the inputs' headers, so a shard's header (with all data offsets) can
be written before any data; the data then goes out chunk by chunk and never sits whole in memory.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from koblla.atomic import write_json
from koblla.chat_vector.checkpoint import ITEMSIZE

Entry = tuple[str, str, tuple[int, ...]]  # name, safetensors dtype code, shape


def nbytes(entry: Entry) -> int:
    return math.prod(entry[2]) * ITEMSIZE[entry[1]]


def plan_shards(entries: list[Entry], shard_bytes: int) -> list[list[Entry]]:
    """Greedy split in the given order; a shard exceeds `shard_bytes` only when one tensor alone does."""
    shards: list[list[Entry]] = [[]]
    size = 0
    for e in entries:
        if shards[-1] and size + nbytes(e) > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(e)
        size += nbytes(e)
    return shards


def shard_name(i: int, n: int) -> str:
    return f"model-{i + 1:05d}-of-{n:05d}.safetensors"


class ShardWriter:
    """One output shard: the header goes out on open; `write` appends data; `close` checks every byte came."""

    def __init__(self, path: Path, entries: list[Entry]):
        self.path = path
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, dtype, shape in entries:
            n = nbytes((name, dtype, shape))
            header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + n]}
            offset += n
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-(len(raw)) % 8)  # data starts 8-byte aligned, as safetensors itself writes
        self.expected = offset
        self.written = 0
        self.fh = open(path, "wb")
        self.fh.write(len(raw).to_bytes(8, "little"))
        self.fh.write(raw)

    def write(self, data: np.ndarray) -> None:
        self.fh.write(memoryview(data).cast("B"))
        self.written += data.nbytes

    def close(self) -> None:
        self.fh.close()
        assert self.written == self.expected, f"{self.path}: wrote {self.written} bytes, header says {self.expected}"


def write_index(out_dir: Path, shards: list[list[Entry]]) -> None:
    n = len(shards)
    weight_map = {e[0]: shard_name(i, n) for i, s in enumerate(shards) for e in s}
    total = sum(nbytes(e) for s in shards for e in s)
    write_json(out_dir / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
