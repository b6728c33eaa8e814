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

# The browser tests need Debian's chromium and chromium-driver. When either is missing they are
# installed with apt-get, as root or with passwordless sudo (sudo -n: never a password prompt).
# Where that cannot be done (no apt-get, not root and sudo wants a password) one line says so
# and how to install them, and pytest reports the browser tests as not run (skipped);
# OVFDLR_REQUIRE_BROWSER=1 (set by CI) makes them fail instead. $OVFDLR_CHROMIUM and
# $OVFDLR_CHROMEDRIVER name other binaries (nothing is installed for those).
BROWSER_INSTALL  := sudo apt-get update && sudo apt-get install -y chromium chromium-driver
CHROMIUM_BIN     ?= /usr/bin/chromium
CHROMEDRIVER_BIN ?= /usr/bin/chromedriver

browser:
	@have() { case "$$1" in */*) [ -f "$$1" ] && [ -x "$$1" ];; \
	    *) command -v "$$1" >/dev/null 2>&1;; esac; }; \
	browser_found() { \
	    if [ -n "$$OVFDLR_CHROMIUM" ]; then have "$$OVFDLR_CHROMIUM"; \
	    else have $(CHROMIUM_BIN) || have chromium || have chromium-browser; fi && \
	    if [ -n "$$OVFDLR_CHROMEDRIVER" ]; then have "$$OVFDLR_CHROMEDRIVER"; \
	    else have $(CHROMEDRIVER_BIN) || have chromedriver; fi; \
	}; \
	browser_found && exit 0; \
	case "$$OVFDLR_REQUIRE_BROWSER" in ""|0|false|no) fate="be skipped";; \
	    *) fate="fail (OVFDLR_REQUIRE_BROWSER is set)";; esac; \
	for v in OVFDLR_CHROMIUM OVFDLR_CHROMEDRIVER; do \
	    eval "named=\$$$$v"; \
	    if [ -n "$$named" ] && ! have "$$named"; then \
	        echo "browser: $$v=$$named is not an executable; the browser tests will $$fate (unset it to use Debian's packages: $(BROWSER_INSTALL))"; \
	        exit 0; \
	    fi; \
	done; \
	as=""; \
	if ! have apt-get; then why="there is no apt-get"; \
	elif [ "$$(id -u)" = 0 ]; then why=""; \
	elif ! have sudo; then why="not root and there is no sudo"; \
	elif sudo -n true </dev/null 2>/dev/null; then why=""; as="sudo -n"; \
	else why="not root and sudo needs a password"; fi; \
	if [ -z "$$why" ]; then \
	    echo "browser: installing chromium and chromium-driver ($${as:+$$as }apt-get install)"; \
	    $$as env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null && \
	    $$as env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	        chromium chromium-driver </dev/null >/dev/null || why="apt-get failed"; \
	    [ -n "$$why" ] || browser_found || why="still missing after apt-get"; \
	fi; \
	if [ -n "$$why" ]; then \
	    echo "browser: chromium or chromium-driver is missing and cannot be installed here ($$why); the browser tests will $$fate. Install with: $(BROWSER_INSTALL)"; \
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
