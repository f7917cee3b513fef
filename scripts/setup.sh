#!/usr/bin/env bash
# Idempotent set-up: create .venv (Python 3.11) and install requirements.txt into it.
# Reinstalls only when requirements.txt or pyproject.toml changed (hash stamp in .venv/.koblla-installed).
# Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$cand; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.koblla-installed
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing requirements.txt into .venv (first time: a few minutes)" >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch first and alone, so pip takes the local CPU wheel and nothing later can pull a second (CUDA) torch.
  .venv/bin/python -m pip install --quiet "$(grep -E '^torch==' requirements.txt)"
  .venv/bin/python -m pip install --quiet -r requirements.txt
  .venv/bin/python - <<'PY'
import torch, torchtune, torchao  # fail fast if a package swapped torch or broke torchtune's imports
assert torch.__version__.startswith("2.13.0"), f"unexpected torch {torch.__version__}: a package pulled another torch"
PY
  echo "$want" > "$stamp"
fi
