"""Helpers shared by the thin `python -m stages.NAME` entry points: logging, params, error -> exit code."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from koblla.errors import KoBLLaError


def setup_logging(verbose: bool = False) -> None:
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
