# Two commands on a fresh machine: `make demo` (the console with its demo shop) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev clean

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

clean:
	rm -rf $(VENV) *.egg-info doorstep-demo.db*
