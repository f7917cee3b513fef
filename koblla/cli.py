"""Helpers shared by the thin `python -m stages.NAME` entry points: logging, params, error -> exit code."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from koblla.errors import KoBLLaError

# Warnings our dependencies log on every run that say nothing about this run (checked versions: torchao 0.15.0 with
# torch 2.13; lm-eval 0.4.13 given a model object and our own num_fewshot): dropped at their loggers, so stage logs
# show only lines that need reading. Anything else those loggers say still comes through.
KNOWN_NOISE: dict[str, tuple[str, ...]] = {
    "torchao": ("Skipping import of cpp extensions",),
    "torchao.kernel.intmm": ("Detected no triton",),
    "lm_eval.models.huggingface": (
        "`pretrained` model kwarg is not of type `str`",
        "Passed an already-initialized model through `pretrained`",
    ),
    "lm_eval.evaluator": ("Overwriting default num_fewshot",),
}


class _DropKnownNoise(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p in msg for p in self.prefixes)


def quiet_known_noise() -> None:
    """Attach the KNOWN_NOISE filters to their loggers (idempotent; before the libraries are imported is fine)."""
    for name, prefixes in KNOWN_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
            logger.addFilter(_DropKnownNoise(prefixes))


def setup_logging(verbose: bool = False) -> None:
    quiet_known_noise()
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser whose --help shows the stage docstring (it starts with the exact command)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_stage(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> int:
    """Run a stage's main; a KoBLLaError becomes one clear message on stderr and exit code 2."""
    try:
        main(argv)
    except KoBLLaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
