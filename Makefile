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

.PHONY: venv install install-test demo test lint bench clean

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

# The suite runs in parallel (pytest-xdist): one worker per core, at least 2 (its tests wait on
# servers and subprocesses as much as on the CPU). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -lt 2 ] && n=2; echo $$n)

test: install-test
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
