# prefect-backfill — every set-up step lives here, so a fresh machine needs nothing done by hand.
#   make demo   builds the environment, fetches the Delta jars once, writes the demo bronze table and
#               backfills it (182 days) with Prefect's embedded server.
#   make test   the whole test suite (real Spark + Delta, real Prefect), as CI runs it.
#   make test-unit / test-integration / test-e2e   one layer of it (tests/unit, tests/integration, tests/e2e).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
# Spark 4.2 runs on JDK 17 or 21; pick 17 explicitly rather than whatever `java` is first.
JAVA_HOME ?= $(firstword $(wildcard /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java-17-openjdk-arm64 /usr/lib/jvm/java-17-openjdk /usr/lib/jvm/java-21-openjdk-amd64))
export JAVA_HOME
# Everything the project writes at run time stays inside the project folder.
export BACKFILL_CACHE_DIR ?= $(CURDIR)/.cache
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
# A fresh SQLite database of the embedded server takes ~11 s to migrate; the default wait is 20 s.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120

.PHONY: class-archive setup jars object-store-jars browser object-store object-store-server metastore demo test test-unit test-integration test-e2e screenshot lint bench bench-scale clean server \
	deployments worker-backfill worker-daily

# --compile-bytecode: uv leaves it out by default, and where PYTHONDONTWRITEBYTECODE is set nothing ever
# writes it, so every process (each CLI, server, worker) compiled ~3,800 modules of Prefect & co. again: 3 s.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -r requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

setup: $(VENV)/.installed jars class-archive object-store-jars browser object-store-server

# Fetch Delta's jars from Maven Central once (Spark's own Ivy resolver) into .cache/ivy; the stamp
# keeps later `make demo` runs from starting a JVM just to check.
JARS_STAMP := $(BACKFILL_CACHE_DIR)/ivy/.delta-spark_4.2_2.13-4.4.0
$(JARS_STAMP): $(VENV)/.installed
	$(VENV)/bin/backfill setup
	touch $@

jars: $(JARS_STAMP)

# The archive of Spark's driver classes every later driver starts from (prefect_backfill.engine.class_archive):
# its name follows the JDK and pyspark's jars, so an upgrade of either writes a new one (one Spark run, ~1 min).
class-archive: $(JARS_STAMP)
	@$(PY) -c "import sys; from pathlib import Path; from prefect_backfill.engine.class_archive import archive_path; \
p = archive_path(Path('$(BACKFILL_CACHE_DIR)')); sys.exit(0 if p is None or p.is_file() else 1)" || $(VENV)/bin/backfill setup

# The S3A connector for s3:// tables (hadoop-aws and the 650 MB AWS SDK bundle), fetched here once rather
# than by the first object-store test of each pytest worker at the same time.
S3A_STAMP := $(BACKFILL_CACHE_DIR)/ivy/.hadoop-aws-3.5.0
$(S3A_STAMP): $(JARS_STAMP)
	$(VENV)/bin/backfill setup --object-store
	touch $@

object-store-jars: $(S3A_STAMP)

# A real S3-compatible server for the object-store tests and demo: versitygw (Apache-2.0), built once with
# `go install` into .cache/bin (about a minute with Go's caches warm, five from nothing on two cores).
OBJECT_STORE_BIN := $(BACKFILL_CACHE_DIR)/bin/versitygw
OBJECT_STORE_PORT ?= 7070
$(OBJECT_STORE_BIN): | $(VENV)/.installed
	$(PY) -c "from pathlib import Path; from prefect_backfill.testing.object_store import build_server; \
	  build_server(Path('$(BACKFILL_CACHE_DIR)'))"

object-store-server: $(OBJECT_STORE_BIN)

# Serve .data/object-store on 127.0.0.1:$(OBJECT_STORE_PORT) in the foreground and print what to export.
object-store: $(OBJECT_STORE_BIN)
	$(PY) -m prefect_backfill.testing.object_store --port $(OBJECT_STORE_PORT) --root .data/object-store

# A Hive metastore (Hive's own Thrift service on Derby, from pyspark's jars) on 127.0.0.1:$(METASTORE_PORT), kept in
# .data/metastore, in the foreground; prints what to export (README, "Catalog tables").
METASTORE_PORT ?= 9083
metastore: $(VENV)/.installed
	$(PY) -m prefect_backfill.testing.metastore --port $(METASTORE_PORT) --root .data/metastore

# Headless Chromium for the UI test: Debian's package (Playwright's own browser download cannot work here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: the UI test will be skipped (apt-get install chromium)"; fi; }

demo: $(VENV)/.installed jars
	$(VENV)/bin/backfill demo

# Three pytest workers, one test file each at a time, the longest files first (tests/conftest.py): the
# suite mostly waits on servers, JVMs and subprocesses (a third of two cores busy with two workers).
PYTEST := $(VENV)/bin/pytest -n 3 --dist loadfile --no-loadscope-reorder

# Lint, types, then all three layers (the import contracts too: tests/unit/test_import_contracts.py) in ONE
# pytest run, so each worker starts its Spark session and its servers once for all of them.
test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PYTEST)

# One layer each. Unit: pure logic, the CLI with fakes, delta-rs tables; no JVM, no server.
test-unit: $(VENV)/.installed
	$(PYTEST) tests/unit

# Real Spark + Delta (the jars) and Prefect's test server.
test-integration: $(VENV)/.installed jars
	$(PYTEST) tests/integration

# Real `prefect server start`, process workers, Spark clusters, SIGKILL, headless Chromium.
test-e2e: setup
	$(PYTEST) tests/e2e

# The UI test writes its screenshot to out/ (ignored); this publishes it as the README's picture.
screenshot: setup
	rm -f out/ui-flow-run-artifacts.png
	$(VENV)/bin/pytest tests/e2e/test_ui.py
	cp out/ui-flow-run-artifacts.png docs/ui-flow-run-artifacts.png

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Against the seed and the single job (docs/benchmarks.md; `$(PY) bench/run.py --quick` for a smoke run of every
# scenario at its smallest size, written under bench/out/quick/; options in bench/driver.py).
bench: setup
	$(PY) bench/run.py

# Scale: shared cap cost, orchestration cost per partition, speedup vs concurrency, 43,848 hourly
# partitions (docs/scale-benchmarks.md; ~25 min; `$(PY) bench/scale.py --quick` for a smoke run under bench/out/scale/quick/).
bench-scale: setup
	$(PY) bench/scale.py

# --- Operate (see README "Operate") -------------------------------------------------------------
PREFECT_PORT ?= 4200
# Only the operate targets talk to that server; `make demo` and `make test` keep their own.
SERVER_API := PREFECT_API_URL=$${PREFECT_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api}

# A real Prefect server (UI on http://127.0.0.1:$(PREFECT_PORT)); leases on disk so concurrency slots
# cannot leak across a restart.
# The UI calls the API it is told of (default :4200): tell it this server's own port.
server: $(VENV)/.installed
	PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE=prefect.server.concurrency.lease_storage.filesystem \
	  PREFECT_UI_API_URL=$${PREFECT_UI_API_URL:-http://127.0.0.1:$(PREFECT_PORT)/api} \
	  $(VENV)/bin/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

# Pools, queues and limits (idempotent), then every deployment of prefect.yaml.
deployments: setup
	$(SERVER_API) $(PY) -m deployments.setup
	$(SERVER_API) $(VENV)/bin/prefect --no-prompt deploy --all

worker-backfill: setup
	$(SERVER_API) $(VENV)/bin/prefect worker start --pool backfill --type process

worker-daily: setup
	$(SERVER_API) $(VENV)/bin/prefect worker start --pool daily --type process

clean:
	rm -rf .data .prefect out .pytest_cache .mypy_cache .ruff_cache
