# One command each: `make repro` (set up + run the embedded default pipeline), `make test` (set up + what CI runs).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
# Stage commands say `python -m stages.X`: run them with the venv first on PATH. Nothing downloads at run time.
RUN := PATH="$(VENV)/bin:$$PATH" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1

.PHONY: setup repro test test-fast
setup:
	@bash scripts/setup.sh

repro: setup
	$(RUN) dvc repro

# Lint first (config: pyproject.toml [tool.ruff]), so CI (`.ci/run` -> `make test`) fails on a finding too.
test: setup
	$(RUN) ruff check .
	$(RUN) pytest -m "slow or not slow"

test-fast: setup
	$(RUN) ruff check .
	$(RUN) pytest -m "not slow"

.PHONY: exps
exps:  ## experiments: one row each, changed params + headline scores (scripts/exp_table.py)
	@$(RUN) python scripts/exp_table.py
