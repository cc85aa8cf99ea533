# Packages go into the active virtual environment, or, when none is active, into a project venv in
# .venv/ (made on first use), never into the system's Python.
SYSTEM_PYTHON ?= python3
ifeq ($(VIRTUAL_ENV),)
VENV := $(CURDIR)/.venv
PYTHON := $(VENV)/bin/python
export VIRTUAL_ENV := $(VENV)
export PATH := $(VENV)/bin:$(PATH)
else
PYTHON ?= python
endif
PIP := $(PYTHON) -m pip --disable-pip-version-check
# The demo uses the default local folder store, kept in this checkout so it never touches ~/.roro.
DEMO_HOME ?= $(CURDIR)/.demo

.PHONY: venv install install-test browser demo test lint bench clean

venv:
ifneq ($(VENV),)
	@test -x $(PYTHON) || { echo "creating the project venv in .venv/"; $(SYSTEM_PYTHON) -m venv $(VENV); }
endif

install: venv
	$(PIP) install --quiet -e .

install-test: venv
	$(PIP) install --quiet -e '.[test]'

demo: install
	rm -rf $(DEMO_HOME) && mkdir -p $(DEMO_HOME)/work
	cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) $(CURDIR)/examples/quickstart.py
	@echo; echo '$$ roro models'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro models
	@echo; echo '$$ roro models:log credit-risk'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro models:log credit-risk
	@echo; echo '$$ roro models:show credit-risk:production'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro models:show credit-risk:production
	@echo; echo '$$ roro models:download credit-risk:production --attachments files'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro models:download credit-risk:production --attachments files
	@cd $(DEMO_HOME)/work && $(PYTHON) -c "import cloudpickle; m = cloudpickle.load(open('credit-risk-v2.pkl', 'rb')); print('loaded the downloaded file: predict(2.0) =', round(m.predict(2.0), 3))"

# The browser tests drive Debian's Chromium through its chromedriver. Run as root (a fresh machine,
# CI), make installs them with apt; otherwise it stops with one line saying what to install.
BROWSER_PACKAGES := chromium chromium-driver
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing $(BROWSER_PACKAGES) for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BROWSER_PACKAGES) >/dev/null; \
	else \
		echo "the browser tests need Debian's chromium and chromium-driver: sudo apt-get install $(BROWSER_PACKAGES)" >&2; exit 1; \
	fi

# The suite runs in parallel (pytest-xdist): one worker per core, at least 2 (its tests wait on
# servers and subprocesses as much as on the CPU). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -lt 2 ] && n=2; echo $$n)

test: install-test browser
	$(PYTHON) -m ruff check roro tests
	$(PYTHON) -m mypy
	$(PYTHON) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS)

lint: install-test
	$(PYTHON) -m ruff check roro tests
	$(PYTHON) -m mypy

# Benchmarks (bench/README.md): roro against the raw baseline; BENCH_ARGS=--full for real sizes.
BENCH_ARGS ?= --quick
bench: install-test
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO_HOME) build dist *.egg-info .pytest_cache .hypothesis
