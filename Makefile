# Every target installs what it needs: a fresh clone needs only python3 (and
# node/npm for `make canisters`).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck prometheus postgresql clients unit demo bench bench-quick canisters check-canisters localnet clean

# The orchestrator with both extras: dev (tests, lint, types) and localnet (the
# local IC that the demo and the integration tests run).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,localnet,postgresql]'
	touch $(STAMP)

## make test: lint, type-check and run the whole test suite
test: $(STAMP) lint typecheck prometheus postgresql clients
	$(PY) -m pytest tests

## prometheus: Debian's prometheus + promtool for the deploy and scrape tests
prometheus:
	bash tools/install-prometheus.sh

## postgresql: Debian's postgresql (initdb, pg_ctl) for the store, worker and chaos tests
postgresql:
	bash tools/install-postgresql.sh

## clients: DFINITY's @dfinity/agent and icp-cli, pinned, for the official-client tests
clients:
	bash tools/install-clients.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest tests/unit

## make demo: the one-command tour on the embedded local IC (DEMO_ARGS="--mib 16 --json")
demo: $(STAMP)
	$(VENV)/bin/replicator demo $(DEMO_ARGS)
	@echo "next: $(VENV)/bin/replicator demo --snapshot  (snapshot backups of a canister without ICRP)" >&2

## make bench: every benchmark at full size (long); make bench-quick: a few minutes.
## Both print a table of figure, target, measured, verdict and exit 1 on a miss.
bench: $(STAMP)
	$(PY) -m benchmarks

bench-quick: $(STAMP)
	$(PY) -m benchmarks --quick

localnet: $(STAMP)
	$(VENV)/bin/replicator localnet start

## make canisters: rebuild every Motoko canister with the pinned moc
tools/moc/node_modules/.package-lock.json: tools/moc/package-lock.json
	npm ci --prefix tools/moc --no-audit --no-fund --loglevel=error

canisters: tools/moc/node_modules/.package-lock.json
	node tools/moc/build.js canisters.json

## check-canisters: a rebuild must reproduce the committed Wasm byte for byte
check-canisters: tools/moc/node_modules/.package-lock.json
	$(PYTHON) tools/check_canisters.py

clean:
	rm -rf $(VENV) tools/moc/node_modules tools/clients/node_modules .pytest_cache .mypy_cache .ruff_cache
