# Two commands on a fresh machine: `make demo` (the console with its demo shop) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
POSTS ?= 5000
# The demo's local ports: `make demo PORT=8600 X_PORT=8775` when the defaults are taken.
PORT ?= 8501
X_PORT ?= 8765
SMTP_PORT ?= 8025
SINK_PORT ?= 8767
MASTODON_PORT ?= 8768
BLUESKY_PORT ?= 8769
# Where the demo shop lives: a SQLite file, or `make demo DB=postgresql://postgres@127.0.0.1/test`.
DB ?= doorstep-demo.db

.PHONY: demo test bench install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"

demo: install
	$(BIN)/doorstep --db '$(DB)' --config demo/doorstep.toml demo --port $(PORT) --x-port $(X_PORT) \
		--smtp-port $(SMTP_PORT) --sink-port $(SINK_PORT) --mastodon-port $(MASTODON_PORT) --bluesky-port $(BLUESKY_PORT)

test: install-dev
	$(BIN)/python -m pytest

# The classifier's throughput on this machine (needs ../shared or $$DOORSTEP_SHARED for the posts).
bench: install
	$(BIN)/python bench/classifier_bench.py --posts $(POSTS)

clean:
	rm -rf $(VENV) *.egg-info doorstep-demo.db* doorstep-demo.x-feed.jsonl doorstep-demo.mastodon-feed.jsonl \
		doorstep-demo.bluesky-feed.jsonl
