# The two commands of the README: `make run` and `make test`. Both set up
# .venv and install everything on a fresh machine.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest
STAMP  := $(VENV)/.installed-stamp

.PHONY: install image run run-stdio test test-unit test-integration test-embedded check check-deployment lint typecheck imports bench bench-peers console-assets check-console-assets clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]'
	@touch $(STAMP)

install: $(STAMP)

## Start the server over HTTP on 127.0.0.1:3000 (embedded PostgreSQL + demo data unless DB_HOST is set).
run: install
	$(VENV)/bin/pgmcp serve --transport http

run-stdio: install
	$(VENV)/bin/pgmcp serve --transport stdio

## Lint, type-check and run the whole suite against a real PostgreSQL (local 5432 if it answers,
## embedded otherwise), then the integration suite again on the embedded server.
test: install check check-deployment
	$(PYTEST) -q
	@if [ -z "$$PGMCP_TEST_DSN" ] && [ "$$PGMCP_TEST_EMBEDDED" != "1" ]; then \
		echo "== integration suite on the embedded PostgreSQL =="; \
		PGMCP_TEST_EMBEDDED=1 $(PYTEST) -q tests/integration -m "not slow"; \
	fi

test-unit: install
	$(PYTEST) -q tests/unit

test-integration: install
	$(PYTEST) -q tests/integration

test-embedded: install
	PGMCP_TEST_EMBEDDED=1 $(PYTEST) -q tests/integration

check: lint typecheck imports

## Dockerfile, Compose, Kubernetes, scripts and SQL, validated without a Docker engine.
check-deployment: install
	bash scripts/check-deployment.sh

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts

typecheck: install
	$(VENV)/bin/mypy

## No import circle in src/pgmcp and no upward import: the layers drawn in scripts/check_imports.py.
imports: install
	$(PY) scripts/check_imports.py

bench: install
	$(PY) benchmarks/run.py

## The third-party MCP clients the tests run (tests/clients: the conformance suite, the TypeScript
## SDK, Node 22 from npm); tests/integration/test_third_party_clients.py runs npm ci itself when needed.
.PHONY: clients
clients:
	cd tests/clients && npm ci --no-fund --no-audit --loglevel=error

## pgmcp beside the node peers (npm packages in benchmarks/peers; needs Node.js and npm).
bench-peers: install
	$(PY) benchmarks/peers.py

## The container image postgresql-mcp-server:<version>, with docker, else podman (offline where no
## registry answers: a Debian base and a host wheelhouse; see scripts/image.sh --help).
image: install
	bash scripts/image.sh build

## The web console's vendored uPlot (src/pgmcp/console/static/vendor/, committed), from npm (needs Node.js).
console-assets:
	cd console-ui && npm ci --no-audit --no-fund && node build.mjs

## CI: the committed console assets are what a fresh `make console-assets` builds.
check-console-assets:
	cd console-ui && npm ci --no-audit --no-fund && node build.mjs --check

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
