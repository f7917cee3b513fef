"""Rewrite params.yaml exactly as `dvc exp run -S` writes it back, so an experiment's diff is the changed line only.

python scripts/format_params.py [PATH ...]        (default: params.yaml; rewrites in place)

`-S` loads params.yaml, applies the Hydra overrides and dumps the whole file with DVC's YAML writer (block lists,
single quotes, its comment placement). Run through that same code with no override, params.yaml comes out in that
style once and is then a fixed point (tests/test_experiments.py checks both). Rerun it after editing params.yaml
by hand (or after merging branches that did).
"""
from __future__ import annotations

import sys

from dvc.utils.hydra import apply_overrides


def main(paths: list[str]) -> int:
    for path in paths or ["params.yaml"]:
        apply_overrides(path, [])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
