# The two commands a newcomer needs: `make run` and `make test`. Each installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= .data

.PHONY: run test lint build clean lock

# requirements.lock pins (with hashes) what the service needs at run time, requirements-dev.lock the test and lint
# tools at the same versions of whatever they share; `make lock` writes both from pyproject.toml.
$(BIN)/.installed: pyproject.toml requirements.lock requirements-dev.lock
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes \
		-r requirements.lock -r requirements-dev.lock
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
	$(BIN)/ruff format --check backend tests
	$(BIN)/mypy

# pip-tools lives in a venv of its own, outside the project. pip-compile keeps the versions already in the locks,
# so only a change to pyproject.toml moves anything.
PIP_TOOLS ?= $(or $(TMPDIR),/tmp)/voucher-pip-tools
PIP_COMPILE := CUSTOM_COMPILE_COMMAND='make lock' $(PIP_TOOLS)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links
DEV_EXTRA := import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["dev"], sep="\n")

lock:
	test -x $(PIP_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(PIP_TOOLS) && $(PIP_TOOLS)/bin/pip install --quiet pip-tools==7.6.2; }
	$(PIP_COMPILE) --output-file requirements.lock pyproject.toml
	$(PYTHON) -c '$(DEV_EXTRA)' | $(PIP_COMPILE) --constraint requirements.lock --output-file requirements-dev.lock -
	sed 's/-r -$$/the dev extra of pyproject.toml/' requirements-dev.lock > requirements-dev.lock.tmp
	mv requirements-dev.lock.tmp requirements-dev.lock

clean:
	rm -rf build $(VENV) node_modules
