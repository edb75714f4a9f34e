# Airlock: `make run` starts it with embedded defaults; `make test` runs the whole suite.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup run test bench bench-smoke clean system-deps

setup: $(VENV)/.installed node_modules/.installed system-deps

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || "$$(sh scripts/find-python)" -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

system-deps:
	@sh scripts/system-deps

run: setup
	$(VENV)/bin/airlock run

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -O -m bench.run $(BENCH_ARGS)

bench-smoke: setup
	$(PY) -O -m bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) node_modules var .pytest_cache
