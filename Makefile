# Two commands for a newcomer: `make demo` and `make test` (`make test-fast` skips the tests
# marked slow). Each creates the virtual environment and installs the project with its dev
# extras on first use; later calls install nothing new unless pyproject.toml changed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ovfdlr-installed

.PHONY: install browser demo test test-fast lint format docs bench clean

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: install
	$(BIN)/ovfdlr demo

# The report's browser test needs Debian's chromium and its driver; install them when missing
# (with sudo unless root).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	    sudo=""; if [ "$$(id -u)" != 0 ]; then sudo="sudo"; fi; \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        --no-install-recommends chromium chromium-driver >/dev/null; \
	fi

# the complete suite
test: install browser
	$(BIN)/python -m pytest

# everything but the tests marked slow (more than about 5 s each), for a quick check
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: install
	$(BIN)/python -m typer ovfdlr.cli utils docs --name ovfdlr --title "ovfdlr command line" --output docs/cli.md

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
