"""`backfill undo` plans against the target's live runs, whatever their pipeline: a partition that a live
run of an alias (another pipeline on the same target) has claimed is refused, never restored under its
feet (delta-rs only: the target's log is read without Spark)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import write_deltalake

from prefect_backfill.coordination import target_key
from prefect_backfill.leases import LeaseTable, RunLease, lease_location
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import Status
from prefect_backfill.registry import register
from prefect_backfill.restoring import prepare_undo
from prefect_backfill.snapshots import TableSnapshot
from prefect_backfill.tables import read_snapshot

DAYS = ("2024-01-01", "2024-01-02")


def keep(df: Any) -> Any:
    return df


class LogOnly:
    """The one engine call planning an undo of a path target makes: its log, read by delta-rs."""

    def snapshot(self, table: TableRef, column: str, grain: Grain, version: int | None = None) -> TableSnapshot:
        return read_snapshot(table.location, column, grain, version)


def test_undo_refuses_a_partition_a_live_run_of_another_pipeline_on_the_target_has_claimed(tmp_path: Path) -> None:
    target = str(tmp_path / "silver" / "orders")
    a = register(Pipeline("undo_target_a", str(tmp_path / "bronze"), target, "d", keep, "1"), replace=True)
    b = register(Pipeline("undo_target_b", str(tmp_path / "bronze"), target, "d", keep, "1"), replace=True)
    days = [date(2024, 1, 1), date(2024, 1, 2)]
    write_deltalake(target, pa.table({"id": [1, 2], "d": days}), partition_by=["d"])  # version 0
    write_deltalake(target, pa.table({"id": [3, 4], "d": days}), partition_by=["d"], mode="append")  # 1: run-1
    ledger = Ledger(str(tmp_path / "silver" / "_backfill_progress"))
    t0 = datetime(2024, 7, 1, tzinfo=UTC)
    ledger.record(
        [
            LedgerEvent(
                "run-1",
                a.name,
                k,
                Status.COMPLETE,
                "1",
                a.fingerprint,
                event_time=t0,
                table_version=1,
                replaced_version=0,
            )
            for k in DAYS
        ]
    )
    leases = LeaseTable(lease_location(ledger.path))
    with RunLease(leases, "run-of-b", b.name, target_key(b.target)):
        ledger.record([LedgerEvent("run-of-b", b.name, DAYS[1], Status.PENDING, "1", b.fingerprint, event_time=t0)])
        prepared = prepare_undo(a.name, "run-1", engine=LogOnly())  # type: ignore[arg-type]
    assert [r.partition for r in prepared.plan.restores] == [DAYS[0]]
    [refused] = prepared.plan.refused
    assert refused.partition == DAYS[1] and refused.reason.startswith("claimed by a live backfill (run run-of-b")
    assert f"of pipeline {b.name}" in refused.reason and not refused.forceable
