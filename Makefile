PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# The demo uses the default local folder store, kept in this checkout so it never touches ~/.roro.
DEMO_HOME ?= $(CURDIR)/.demo

.PHONY: install install-test demo test lint bench clean

install:
	$(PIP) install --quiet --disable-pip-version-check -e .

install-test:
	$(PIP) install --quiet --disable-pip-version-check -e '.[test]'

demo: install
	rm -rf $(DEMO_HOME) && mkdir -p $(DEMO_HOME)/work
	cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) $(CURDIR)/examples/quickstart.py
	@echo; echo '$$ roro models'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro.cli models
	@echo; echo '$$ roro models:log credit-risk'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro.cli models:log credit-risk
	@echo; echo '$$ roro models:show credit-risk:production'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro.cli models:show credit-risk:production
	@echo; echo '$$ roro models:download credit-risk:production --attachments files'
	@cd $(DEMO_HOME)/work && RORO_HOME=$(DEMO_HOME)/store $(PYTHON) -m roro.cli models:download credit-risk:production --attachments files
	@cd $(DEMO_HOME)/work && $(PYTHON) -c "import cloudpickle; m = cloudpickle.load(open('credit-risk-v2.pkl', 'rb')); print('loaded the downloaded file: predict(2.0) =', round(m.predict(2.0), 3))"

test: install-test
	$(PYTHON) -m ruff check roro tests
	$(PYTHON) -m pytest -q -p no:cacheprovider

lint: install-test
	$(PYTHON) -m ruff check roro tests

# Benchmarks (bench/README.md): roro against the raw baseline; BENCH_ARGS=--full for real sizes.
BENCH_ARGS ?= --quick
bench: install-test
	$(PYTHON) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(DEMO_HOME) build dist *.egg-info .pytest_cache .hypothesis
