# One command each: `make repro` (set up + run the embedded default pipeline), `make test` (set up + what CI runs).
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
# Stage commands say `python -m stages.X`: run them with the venv first on PATH. Nothing downloads at run time.
# GLIBC_TUNABLES: glibc's malloc asks for transparent huge pages, so the tiny models' 0.5 GB logit buffers, which
# every training step allocates anew, cost 512x fewer page faults: same bytes, about a third less wall time
# (docs/tiny_models.md). Ignored where THP is off.
RUN := PATH="$(VENV)/bin:$$PATH" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1 \
	GLIBC_TUNABLES=glibc.malloc.hugetlb=1

.PHONY: setup repro test test-fast
setup:
	@bash scripts/setup.sh

repro: setup
	$(RUN) dvc repro

# Lint first (config: pyproject.toml [tool.ruff]), so CI (`.ci/run` -> `make test`) fails on a finding too.
# Tests run on every core (pytest-xdist; --dist loadgroup keeps each xdist_group on one worker).
# JOBS=0 runs them in this process.
JOBS ?= auto
PYTEST := pytest -n $(JOBS) --dist loadgroup --durations=25
test: setup
	$(RUN) ruff check .
	$(RUN) $(PYTEST) -m "slow or not slow"

test-fast: setup
	$(RUN) ruff check .
	$(RUN) $(PYTEST) -m "not slow"

.PHONY: exps
exps:  ## experiments: one row each, changed params + headline scores (scripts/exp_table.py)
	@$(RUN) python scripts/exp_table.py
