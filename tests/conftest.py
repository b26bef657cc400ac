"""Test-wide set-up: everything a test writes stays in temporary folders; telemetry is off.

Environment is set before the package is imported, because Prefect reads its settings at import.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from prefect_backfill.testing.object_store import ObjectStore

ROOT = Path(__file__).resolve().parents[1]
_SESSION_TMP = Path(tempfile.mkdtemp(prefix="backfill-tests-"))

os.environ.setdefault("BACKFILL_CACHE_DIR", str(ROOT / ".cache"))  # the Delta jars, fetched once
os.environ["BACKFILL_DATA_DIR"] = str(_SESSION_TMP / "data")
os.environ["PREFECT_HOME"] = str(_SESSION_TMP / "prefect")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
# Test tables are a few kilobytes: without this every run would be one chunk (the 32 MiB minimum share,
# prefect_backfill.chunking), and the tests of chunks side by side would test nothing. Its rule has its own test.
os.environ["BACKFILL_CHUNK_MIN_SHARE_MB"] = "0"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
# Every JVM of the suite (the tests' own Spark, each CLI run's, each flow run's, the clusters') compiles with
# C1 only: on these tables of a few hundred rows the JVMs spend their CPU starting, loading classes and
# JIT-compiling, not running jobs, and C2's compiler threads cost more than they win back. Measured on two
# cores: a 6-day `backfill run` 57 -> 35 s of JVM CPU, two integration files 206 -> 166 s; the suite is
# CPU-bound (three workers on two cores), so this is wall time too. Behaviour is the same; users' JVMs keep
# the default tiered compilation (C2 pays on real partitions).
# They also evaluate expressions interpreted (Spark's NO_CODEGEN factory mode, as a `spark.*` system property
# every SparkConf reads): Java Flight Recorder on a 6-chunk `backfill run` put ~40 % of its task threads'
# samples in generating and formatting code (CodegenContext.buildCodeBlocks -> CodeFormatter) for the wide
# schema of Delta's log replay, which every chunk runs again for a new table version; the generated code is
# then cached and hardly run on tables of a few rows. Measured, same run: 63-64 -> 46 s of JVM CPU, 66 -> 50 s
# wall. Spark computes the same values either way (it falls back to the interpreted forms itself when codegen
# fails); the package's behaviour does not depend on it. One CLI test runs with users' JVM settings exactly
# (test_cli_interrupt.py, the printed command). An already set JAVA_TOOL_OPTIONS is kept.
SUITE_JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -Dspark.sql.codegen.factoryMode=NO_CODEGEN"
os.environ.setdefault("JAVA_TOOL_OPTIONS", SUITE_JVM_OPTIONS)


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    """A real S3-compatible server (versitygw) for this test process, with the bucket ``lake``; its
    settings and the AWS credentials are exported, so every delta-rs table and Spark session of the tests
    reaches it. They only apply to s3:// paths: the S3A connector itself is asked for by the integration
    ``spark`` fixture, not exported (a process the e2e tests start must not pay for it). Built by
    ``make object-store`` (``make test`` does it): never skipped."""
    from prefect_backfill.testing.object_store import running_store

    root = tmp_path_factory.mktemp("object-store")
    with running_store(ROOT / ".cache", root / "data", log=root / "versitygw.log") as store:
        store.bucket("lake")
        os.environ.update(store.env)
        yield store


#: The longest files, longest first (seconds of one `make test`, docs in the README's "Tests" section).
#: pytest-xdist hands out whole files (``--dist loadfile``) in collection order once reordering by test
#: count is off (``--no-loadscope-reorder``); starting with the longest keeps a 13-minute file from being
#: the last one a worker picks up while the other sits idle.
LONGEST_FIRST = (
    "tests/e2e/test_deployments.py",  # 1,049 s (a1dc194, 2026-12-07)
    "tests/integration/test_object_store.py",  # 761 s
    "tests/integration/test_cli_interrupt.py",  # 642 s
    "tests/e2e/test_crash_recovery.py",  # 500 s
    "tests/integration/test_backfill.py",  # 442 s
    "tests/e2e/test_canary_gate.py",  # 425 s
    "tests/integration/test_checks_diff.py",  # 303 s
    "tests/e2e/test_spark_cluster.py",  # 253 s
    "tests/integration/test_audit.py",  # 228 s
    "tests/e2e/test_two_drivers.py",  # 200 s
    "tests/e2e/test_dask_cluster.py",  # 182 s
    "tests/e2e/test_catalog_tables.py",  # 140 s (2026-12-08)
    "tests/e2e/test_daily_not_blocked.py",  # 100 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files in :data:`LONGEST_FIRST` order, then the rest as collected; a file's own order is kept
    (sorting is stable), since some files run their tests on one shared lake, in order."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def key(item: pytest.Item) -> int:
        return rank.get(item.nodeid.split("::", 1)[0], len(rank))

    items.sort(key=key)
