"""Digests of rows for targets whose files mix partitions (clustered, unpartitioned): never compared with a
digest of files, immune to a compaction's rule (there is nothing to explain), and each partition's files
found from the log's statistics (what an undo needs to still exist)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from prefect_backfill.drift import DriftKind, rewrite_suspects, target_drift
from prefect_backfill.engine.content import content_digest
from prefect_backfill.partitions import Grain
from prefect_backfill.snapshots import CONTENT_DIGEST, PartitionFiles, TableSnapshot
from prefect_backfill.tables import covering_files


def by_rows(rows: int, hash_sum: int) -> TableSnapshot:
    files = PartitionFiles(content_digest(rows, hash_sum), 0, rows)
    return TableSnapshot(True, "t1", 7, {"2024-01-02": files}, content=True)


def test_a_digest_of_rows_is_compared_only_with_one_of_rows() -> None:
    recorded = content_digest(40, 123)
    assert recorded.startswith(CONTENT_DIGEST) and recorded == content_digest(40, 123) != content_digest(40, 124)
    now = by_rows(40, 123)
    assert target_drift("2024-01-02", now, rows=40, digest=recorded, target_id="t1", table_version=5) is None
    changed = target_drift("2024-01-02", by_rows(40, 999), rows=40, digest=recorded, target_id="t1", table_version=5)
    assert changed is not None and changed.kind is DriftKind.REWRITTEN
    assert changed.detail == "the same 40 rows, other values than it wrote"
    # A digest of files recorded before the table was recreated clustered: cannot tell, never drift.
    assert target_drift("2024-01-02", now, rows=40, digest="0123456789abcdef", target_id="t1") is None
    # Rows still count: a day with other row counts is drift whatever the digests.
    fewer = target_drift("2024-01-02", by_rows(39, 123), rows=40, digest=recorded, target_id="t1")
    assert fewer is not None and fewer.kind is DriftKind.ROWS
    # Nothing to read from the log to tell a compaction: digests of rows do not change with one.
    assert rewrite_suspects(by_rows(40, 999), [("2024-01-02", recorded, 5)]) is None


def test_each_partition_has_the_files_whose_statistics_cover_it(tmp_path: Path) -> None:
    table = str(tmp_path / "t")
    for days in ([date(2024, 1, 1), date(2024, 1, 3)], [date(2024, 1, 3), date(2024, 1, 5)]):
        write_deltalake(table, pa.table({"order_date": days, "n": [1, 2]}), mode="append")
    files = covering_files(DeltaTable(table), table, "order_date", Grain.DAY)
    assert sorted(files) == [f"2024-01-0{d}" for d in range(1, 6)]
    assert len(files["2024-01-03"]) == 2 and len(files["2024-01-01"]) == 1 and len(files["2024-01-05"]) == 1
    assert files["2024-01-02"] == files["2024-01-01"] and all(p.startswith(table) for p in files["2024-01-02"])
    monthly = covering_files(DeltaTable(table), table, "order_date", Grain.MONTH)
    assert list(monthly) == ["2024-01"] and len(monthly["2024-01"]) == 2
