# Two commands on a fresh machine: `make demo` (the console with its demo shop) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POSTS ?= 5000

.PHONY: demo test bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"

demo: install
	$(BIN)/doorstep --db doorstep-demo.db --config demo/doorstep.toml demo

test: install-dev
	$(BIN)/python -m pytest

# The classifier's throughput on this machine (needs ../shared or $$DOORSTEP_SHARED for the posts).
bench: install
	$(BIN)/python bench/classifier_bench.py --posts $(POSTS)

clean:
	rm -rf $(VENV) *.egg-info doorstep-demo.db*
