# The two commands: `make demo` and `make test`. Both build .venv from nothing but Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
NATIVE_SOURCES := $(wildcard src/vitalops/ingest/*.c src/vitalops/ingest/*.h)

.PHONY: demo test bench lint typecheck fhir-examples clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml hatch_build.py $(NATIVE_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml hatch_build.py $(NATIVE_SOURCES) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

demo: $(STAMP)
	$(BIN)/vitalops demo

# One worker per core, each test file on one worker (its module fixtures are built once);
# PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= auto

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Every bench records its figures in bench/results.json beside the accepted (committed) ones; the
# summary at the end flags any that fell by more than 20% (bench/_results.py).
bench: $(DEV_STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done
	@$(BIN)/python bench/_results.py

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench || true

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

fhir-examples:
	bash scripts/fetch_fhir_examples.sh

clean:
	rm -rf $(VENV) .vitalops .pytest_cache src/vitalops/ingest/_native*.so
