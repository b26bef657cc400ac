"""Unit tests run without a JVM: `backfill run`'s Spark warm-up (which starts Spark and creates the target
while the embedded server starts) is turned off here; the CLI tests fake the flow it would warm up for."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_spark_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("prefect_backfill.cli.run._warm_up", lambda prepared: None)
