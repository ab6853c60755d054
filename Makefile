# umbra developer entry points. `make help` lists them.
#
# Everything runs inside .venv, created with $(PYTHON) on first use. `make install`
# is idempotent: a stamp file records that the pinned requirements and the
# editable project are installed, and it is redone only when requirements*.txt
# or pyproject.toml change. KafkaJS (a compat-test client) is installed the same
# way with `npm ci` from its lock file, into tests/compat/kafkajs/node_modules.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALL_STAMP := $(VENV)/.umbra-install-stamp
KAFKAJS_DIR := tests/compat/kafkajs
KAFKAJS_STAMP := $(KAFKAJS_DIR)/node_modules/.umbra-install-stamp

# Per-test timeout in seconds; a test may raise its own with @pytest.mark.timeout.
PYTEST_TIMEOUT ?= 180
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -rfEs --tb=short --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

# Debian packages the tests use, as COMMAND=PACKAGE; each is installed only
# when its command is missing (a node already on PATH, of any origin, is kept).
# etcd-server is the clustered control plane's store (tests start their own on free ports).
# Burrow (the lag monitor of tests/compat/test_compat_burrow.py) needs a ZooKeeper; Debian's zookeeper puts no
# command on PATH, so a file it installs stands for it (an absolute path is checked with -e).
DEBIAN_PACKAGES := kcat=kcat node=nodejs npm=npm etcd=etcd-server Burrow=burrow \
	/usr/share/zookeeper/bin/zkServer.sh=zookeeper

MYPY_STRICT_PATHS := umbra
BENCH_ARGS ?=

.PHONY: help install system-packages kafkajs test test-unit test-integration test-compat lint bench bench-cluster bench-scaling bench-wan bench-tls demo clean distclean

help:
	@echo "make install           create .venv, install pinned deps + umbra (editable) + Debian test tools + KafkaJS"
	@echo "make test              the whole suite (unit, integration, compat), as CI runs it"
	@echo "make test-unit         tests/unit only"
	@echo "make test-integration  tests/integration only"
	@echo "make test-compat       tests/compat only (real Kafka clients against a real broker)"
	@echo "make lint              ruff, and mypy --strict on $(MYPY_STRICT_PATHS)"
	@echo "make bench             benchmarks/produce_consume.py (BENCH_ARGS='--mb 64' to size it)"
	@echo "make bench-cluster     benchmarks/cluster.py: replication factor 1 vs 3 on three brokers (needs etcd)"
	@echo "make bench-scaling     benchmarks/replication_scaling.py: shadow-link catch-up on 1, 2 and 3 shadow brokers (needs etcd)"
	@echo "make bench-wan         benchmarks/wan.py: shadow-link catch-up at 50 ms RTT against 0 ms, and RPO at 20 MB/s across it"
	@echo "make bench-tls         produce_consume.py and replication.py --tls: throughput over TLS as a ratio of plaintext"
	@echo "make demo              the demo (umbra/demo.py): two 3-broker clusters on etcd, a shadow link, a broker killed, failover"
	@echo "make clean             remove caches and build output; make distclean also removes .venv"

install: $(INSTALL_STAMP) system-packages kafkajs

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "umbra needs Python >= 3.11, $(PYTHON) is " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

$(INSTALL_STAMP): $(PY) requirements.txt requirements-dev.txt pyproject.toml
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -q -r requirements-dev.txt -e .
	@touch $@

system-packages:
	@bash scripts/install-debian-packages.sh $(DEBIAN_PACKAGES)

kafkajs: $(KAFKAJS_STAMP)

# npm ci empties node_modules first, so the stamp (inside it) goes too when it reinstalls. Without
# npm (not root, no apt-get) the step says so and continues, as system-packages does.
$(KAFKAJS_STAMP): $(KAFKAJS_DIR)/package.json $(KAFKAJS_DIR)/package-lock.json | system-packages
	@if command -v npm >/dev/null 2>&1; then \
		echo "npm ci --prefix $(KAFKAJS_DIR)"; \
		npm ci --prefix $(KAFKAJS_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "make install: npm is missing, so KafkaJS is not installed in $(KAFKAJS_DIR)" >&2; \
	fi

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

bench-cluster: install
	$(PY) benchmarks/cluster.py $(BENCH_ARGS)

bench-scaling: install
	$(PY) benchmarks/replication_scaling.py $(BENCH_ARGS)

bench-wan: install
	$(PY) benchmarks/wan.py $(BENCH_ARGS)

bench-tls: install
	$(PY) benchmarks/produce_consume.py --tls --mb 256 --acks 1 $(BENCH_ARGS)
	$(PY) benchmarks/replication.py --tls --mb 256 --repeats 2 $(BENCH_ARGS)

demo: install
	$(PY) -m umbra.demo

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) *.egg-info
