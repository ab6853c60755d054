# umbra developer entry points. `make help` lists them.
#
# Everything runs inside .venv, created with $(PYTHON) on first use. `make install`
# is idempotent: a stamp file records that the pinned requirements and the
# editable project are installed, and it is redone only when requirements*.txt
# or pyproject.toml change.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.umbra-install-stamp

# Per-test timeout in seconds; a test may raise its own with @pytest.mark.timeout.
PYTEST_TIMEOUT ?= 180
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -rfEs --tb=short --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

# Debian packages the tests use, as COMMAND=PACKAGE; each is installed only
# when its command is missing. etcd (for the clustered control plane) will be
# added here as etcd=etcd-server once a test needs it.
DEBIAN_PACKAGES := kcat=kcat

MYPY_STRICT_PATHS := umbra/protocol umbra/records umbra/storage
BENCH_ARGS ?=

.PHONY: help install system-packages test test-unit test-integration test-compat lint bench demo clean distclean

help:
	@echo "make install           create .venv, install pinned deps + umbra (editable) + Debian test tools"
	@echo "make test              the whole suite (unit, integration, compat), as CI runs it"
	@echo "make test-unit         tests/unit only"
	@echo "make test-integration  tests/integration only"
	@echo "make test-compat       tests/compat only (real Kafka clients against a real broker)"
	@echo "make lint              ruff, and mypy --strict on $(MYPY_STRICT_PATHS)"
	@echo "make bench             benchmarks/produce_consume.py (BENCH_ARGS='--mb 64' to size it)"
	@echo "make demo              run the demo (umbra.demo)"
	@echo "make clean             remove caches and build output; make distclean also removes .venv"

install: $(INSTALL_STAMP) system-packages

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "umbra needs Python >= 3.11, $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): $(PY) requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -q -r requirements-dev.txt -e .
	@touch $@

system-packages:
	@bash scripts/install-debian-packages.sh $(DEBIAN_PACKAGES)

# pytest exits 5 when it collected no test: that is a failure here, never a silent pass.
define run_pytest
	@set +e; $(PYTEST) $(1); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make: pytest collected no tests in $(1); treating that as a failure" >&2; fi; \
	exit $$status
endef

test: install
	$(call run_pytest,tests)

test-unit: install
	$(call run_pytest,tests/unit)

test-integration: install
	$(call run_pytest,tests/integration)

test-compat: install
	$(call run_pytest,tests/compat)

lint: install
	$(VENV)/bin/ruff check umbra tests benchmarks
	$(VENV)/bin/mypy --strict $(MYPY_STRICT_PATHS)

bench: install
	$(PY) benchmarks/produce_consume.py $(BENCH_ARGS)

demo: install
	$(PY) -m umbra.demo

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
