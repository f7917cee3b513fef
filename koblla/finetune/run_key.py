"""Names for a run: `config_hash` (what it trains, from the config alone: published in metrics) and `run_key` (the
config plus the content of its inputs: the name of its scratch folder, so a rerun of the same job resumes)."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

# Keys that say where and how this attempt runs, not what it trains: left out of both hashes.
VOLATILE_KEYS = ("output_dir", "resume_from_checkpoint", "metric_logger", "checkpointer.output_dir")


def fingerprint(paths: Iterable[Path]) -> list[list]:
    """Name (relative to its input), size and SHA-256 of every file under `paths`: a changed input gives a new
    key (a fresh run); a copy of the same bytes, with any mtime and at any place (another node, a fresh clone,
    `dvc checkout`), gives the same one. Hashing reads every byte (about a minute per 16 GB checkpoint)."""
    out = []
    for i, root in enumerate(paths):
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
        for f in files:
            with open(f, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
            out.append([i, f.relative_to(root).as_posix() if f != root else f.name, f.stat().st_size, digest])
    return out


def trained_config(cfg) -> dict:
    """A torchtune config as a plain dict, minus where a run writes and whether it resumes."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg, resolve=False)
    for key in VOLATILE_KEYS:
        node = data
        *parents, last = key.split(".")
        for k in parents:
            node = node.get(k, {})
        node.pop(last, None)
    return data


def config_hash(cfg) -> str:
    """Hash of what a run trains, from the config alone: the same on every machine and clone (it goes into metrics)."""
    blob = json.dumps(trained_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_key(cfg, inputs: Iterable[Path]) -> str:
    """Name of a run's scratch folder: the config plus the content of its input files, so that a changed input
    starts a fresh run while a rerun of the same job resumes, on every node and in every clone."""
    blob = json.dumps({"config": trained_config(cfg), "inputs": fingerprint(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
