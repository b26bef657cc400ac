"""Unit tests run without a JVM and without a server: `backfill run`'s Spark warm-up (which starts Spark and
creates the target while the embedded server starts) and its embedded Prefect server are turned off here;
the CLI tests fake the flow they are for. A unit test that starts Spark anyway fails (it belongs in
tests/integration)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_spark_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("prefect_backfill.cli.run._warm_up", lambda prepared: None)
    monkeypatch.setattr("prefect_backfill.embedded.start_embedded_server", lambda: None)


def _spark_started() -> bool:
    spark = sys.modules.get("prefect_backfill.engine.spark")  # never imported: never started
    return spark is not None and spark.started_spark() is not None


@pytest.fixture(autouse=True)
def _no_spark_started() -> Iterator[None]:
    """In `make test` a worker may already hold the integration tests' session: only a start counts."""
    before = _spark_started()
    yield
    if not before and _spark_started():
        pytest.fail("this unit test started Spark: the unit layer runs without a JVM (tests/integration has one)")
