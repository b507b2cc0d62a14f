# Set-up and common tasks. Every target creates ./.venv on first use (torch first; a torch already
# installed there, e.g. the CPU build, is kept).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup train test test-slow lint docs docs-serve typecheck

$(BIN)/streamx: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	@# the distribution was once named streamx (the import name still is): drop that install first
	$(BIN)/pip uninstall --quiet --yes streamx 2>/dev/null || true
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/streamx

# A real training job: Stream AC(λ) on Hopper-v5 for 100k steps (run dir printed at the end).
train: setup
	$(BIN)/streamx train stream_ac --env Hopper-v5 --steps 100000

# The default test suite (unit + short integration tests; no learning tests).
test: setup
	$(BIN)/python -m pytest -q -n 2

# Slow tests (minutes): agents must learn CartPole-v1 within 100k steps; Atari fast-path lock-step
# equivalence; SB3 same-seed runs; the stream-barrier smoke sweep (killed, resumed, plotted); Ray.
test-slow: setup
	$(BIN)/python -m pytest -q -m slow -n 2

# ruff, then mypy over the package (configuration: [tool.mypy] in pyproject.toml; every function
# annotated).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

typecheck: setup
	$(BIN)/mypy

# The documentation site (mkdocs.yml) into ./site; --strict: a broken link or reference fails.
docs: setup
	$(BIN)/mkdocs build --strict --site-dir site

# Serve the documentation site at http://127.0.0.1:8000 while editing docs/.
docs-serve: setup
	$(BIN)/mkdocs serve
