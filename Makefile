# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= .data

.PHONY: run test lint build clean

$(BIN)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

build: $(BIN)/.installed node_modules/.installed
	$(BIN)/voucher build

run: build
	$(BIN)/voucher serve --data-dir $(DATA_DIR)

test: build lint
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check backend tests scripts
	$(BIN)/ruff format --check backend
	$(BIN)/mypy

clean:
	rm -rf build $(VENV) node_modules
