# `make test` and `make demo` set up .venv themselves on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := swim transport simulations

.PHONY: test lint typecheck pytest demo bench compiled notebooks clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(PACKAGES) tests $(wildcard benchmarks) $(wildcard examples)

typecheck: $(STAMP)
	$(BIN)/mypy $(PACKAGES) tests $(wildcard benchmarks) $(wildcard examples)

# Two workers: most of the suite's wall time is real processes and sockets waiting,
# so two files at a time keep it well inside CI's budget on 2 cores.
pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/swim demo

# The core compiled with mypyc (setup.py's SWIM_COMPILE=1 build), installed into
# build/compiled-site for the benchmarks to put first on PYTHONPATH; benchmarks._builds
# rebuilds it only when a source is newer than the build.
compiled: $(STAMP)
	$(BIN)/python -m benchmarks._builds

bench: compiled
	$(BIN)/python -m benchmarks

# The research notebooks at full size (SWIM_NOTEBOOK_SCALE=full), outputs written in place.
notebooks: $(STAMP)
	$(BIN)/python -m tests.notebook_runner --scale full

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
