"""The ledger's SQL views on real Spark: every column of the record, the same state as the fold, and a
ledger written by an older release (fewer columns, cache hits marked in ``error``) read the same way."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from prefect_backfill.ledger import SCHEMA, Ledger, LedgerEvent, register_ledger_views
from prefect_backfill.ledger_record import COLUMNS, PartitionState, Status

pytestmark = pytest.mark.spark

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def test_the_views_have_every_column_and_agree_with_the_fold(spark: Any, tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = Ledger(path)
    ledger.record(
        [
            LedgerEvent("r1", "p", "a", Status.RUNNING, "1", "1:a", 1, event_time=T0),
            LedgerEvent("r1", "p", "a", Status.COMPLETE, "1", "1:a", 1, event_time=T0, rows_out=5, target_digest="d"),
            LedgerEvent("r2", "p", "b", Status.COMPLETE, "1", "1:a", event_time=T0, cached=True, rows_out=3),
            LedgerEvent("r1", "p", "c", Status.FAILED, "1", "1:a", 2, event_time=T0, error="boom", check_name="x"),
        ]
    )
    register_ledger_views(spark, str(path))
    status = spark.table("backfill_progress")
    assert status.columns == [c.state for c in COLUMNS]
    assert sorted(status.columns) == sorted(f.name for f in fields(PartitionState))
    assert spark.table("backfill_progress_events").columns == [c.name for c in COLUMNS]
    fold = ledger.current("p")
    rows = {r["partition"]: r.asDict() for r in status.collect()}
    for key, state in fold.items():
        for name in ("status", "rows_out", "cached", "error", "check_name", "target_digest", "attempt", "run_id"):
            assert rows[key][name] == getattr(state, name), (key, name)


def test_an_old_ledger_has_every_column_in_the_views_and_its_cache_hits_read_as_cached(
    spark: Any, tmp_path: Path
) -> None:
    path = tmp_path / "old"
    old = pa.schema([f for f in SCHEMA if f.name not in ("cached", "target_digest", "undone_run", "check_name")])
    row = {"pipeline": "p", "version": "1", "fingerprint": "1:a", "host": "h", "attempt": 1, "event_time": T0}
    write_deltalake(
        str(path),
        pa.Table.from_pylist(
            [
                {**row, "run_id": "r1", "partition": "a", "status": "COMPLETE"},
                {**row, "run_id": "r2", "partition": "b", "status": "COMPLETE", "error": "cached: r1"},
                {**row, "run_id": "r2", "partition": "b", "status": "RUNNING", "event_time": T0 - timedelta(1)},
            ],
            schema=old,
        ),
        mode="append",
    )
    register_ledger_views(spark, str(path))
    status = spark.table("backfill_progress")
    assert status.columns == [c.state for c in COLUMNS]
    cached = {r["partition"]: r["cached"] for r in status.collect()}
    assert cached == {"a": False, "b": True}
    assert {k: s.cached for k, s in Ledger(path).current("p").items()} == cached
