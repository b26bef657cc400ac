"""A compaction of the target (OPTIMIZE) is not drift: it rewrites a partition's files with Delta's
``dataChange: false`` and leaves its rows as they were. Pure logic (which commits changed data, from where
the log can tell), then real Delta tables compacted by delta-rs and read through the CLI's `audit` and
`status` (no JVM). Spark's own OPTIMIZE on a backfilled target: tests/integration/test_audit.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from prefect_backfill.cli import run_cli
from prefect_backfill.drift import DriftKind, rewrite_suspects, target_drift
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.partitions import Grain
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import Status
from prefect_backfill.preparing import prepare
from prefect_backfill.registry import register
from prefect_backfill.request import BackfillRequest
from prefect_backfill.snapshots import DataChanges, PartitionFiles, TableSnapshot
from prefect_backfill.tables import explain_rewrites, read_snapshot, with_data_changes

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


def test_which_partitions_kept_their_data_since_a_version() -> None:
    changes = DataChanges(after=5, until=9, latest={"2024-01-02": 8})
    assert changes.unchanged_since("2024-01-01", 5)  # touched by nothing that changed data
    assert changes.unchanged_since("2024-01-02", 8)  # our own commit was the last to change it
    assert not changes.unchanged_since("2024-01-02", 7)  # another writer's commit 8 came after ours
    assert not changes.unchanged_since("2024-01-01", 4)  # the log was read from 6 on: 5 cannot be told
    assert not changes.unchanged_since("2024-01-01", None)  # no recorded version: cannot be told


def test_other_files_are_drift_unless_the_log_shows_only_a_compaction_since_our_commit() -> None:
    files = {"2024-01-01": PartitionFiles("new", 100, 40)}
    plain = TableSnapshot(True, "tid", 9, files)

    def kind(target: TableSnapshot, version: int | None) -> DriftKind | None:
        drift = target_drift("2024-01-01", target, rows=40, digest="old", target_id="tid", table_version=version)
        return drift.kind if drift is not None else None

    assert kind(plain, 3) is DriftKind.REWRITTEN  # the log not read: other files are a rewrite, as before
    compacted = TableSnapshot(True, "tid", 9, files, changes=DataChanges(2, 9, {}))
    assert kind(compacted, 3) is None
    assert kind(compacted, None) is DriftKind.REWRITTEN
    rewritten = TableSnapshot(True, "tid", 9, files, changes=DataChanges(2, 9, {"2024-01-01": 6}))
    assert kind(rewritten, 3) is DriftKind.REWRITTEN
    fewer = TableSnapshot(True, "tid", 9, {"2024-01-01": PartitionFiles("new", 100, 39)}, changes=DataChanges(2, 9))
    drift = target_drift("2024-01-01", fewer, rows=40, digest="old", target_id="tid", table_version=3)
    assert drift is not None and drift.kind is DriftKind.ROWS  # rows are compared first, whatever the log says


def test_the_log_is_read_again_only_from_the_oldest_commit_of_a_partition_whose_files_changed() -> None:
    target = TableSnapshot(True, "tid", 9, {k: PartitionFiles(k, 1, 1) for k in DAYS})
    same = [(k, k, 4) for k in DAYS]
    assert rewrite_suspects(target, same) is None
    assert rewrite_suspects(target, [*same[:1], ("2024-01-02", "x", 6), ("2024-01-03", "y", 5)]) == 5
    assert rewrite_suspects(target, [("2024-01-02", "x", None)]) is None  # nothing to read from
    assert rewrite_suspects(TableSnapshot.unknown(), [("2024-01-02", "x", 6)]) is None


def keep(df):  # type: ignore[no-untyped-def]
    return df


def _rows(day: str, n: int, first: int = 0) -> pa.Table:
    return pa.table({"id": list(range(first, first + n)), "d": [date.fromisoformat(day)] * n})


def record_complete(tmp_path: Path, p: Pipeline, written: TableSnapshot, read: TableSnapshot | None = None) -> None:
    """Every day COMPLETE in the ledger, with the digests and versions a run records at its commit."""
    Ledger(tmp_path / "silver" / "_backfill_progress").record(
        [
            LedgerEvent(
                "run-1",
                p.name,
                key,
                Status.COMPLETE,
                "1",
                p.fingerprint,
                rows_out=40,
                target_id=written.table_id,
                target_digest=written.digest(key),
                table_version=written.version,
                source_digest=read.digest(key) if read is not None else None,
                source_version=read.version if read is not None else None,
            )
            for key in DAYS
        ]
    )


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Pipeline, str]:
    """Days 1-3 written in two files each (20 + 20 rows) and recorded COMPLETE at that version, as a
    run records them."""
    target = str(tmp_path / "silver" / "t")
    p = register(
        Pipeline("compacted", TableRef(str(tmp_path / "bronze")), TableRef(target), "d", keep, "1"), replace=True
    )
    for day in DAYS:
        write_deltalake(target, _rows(day, 20), mode="append", partition_by=["d"])
        write_deltalake(target, _rows(day, 20, 20), mode="append", partition_by=["d"])
    record_complete(tmp_path, p, read_snapshot(target, "d", Grain.DAY))
    return p, target


def audit(name: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[tuple[str, str]]]:
    capsys.readouterr()
    code = run_cli(["audit", name, "--json"])
    out = json.loads(capsys.readouterr().out)
    return code, [(f["partition"], f["kind"]) for f in out["findings"]]


def test_a_compacted_target_audits_clean_and_a_later_rewrite_is_still_found(
    lake: tuple[Pipeline, str], capsys: pytest.CaptureFixture[str]
) -> None:
    p, target = lake
    before = read_snapshot(target, "d", Grain.DAY)
    metrics = DeltaTable(target).optimize.compact()
    assert metrics["numFilesRemoved"] == 6 and metrics["numFilesAdded"] == 3
    after = read_snapshot(target, "d", Grain.DAY)
    assert all(after.digest(k) != before.digest(k) for k in DAYS)  # every partition's files changed
    assert audit(p.name, capsys) == (0, [])
    assert run_cli(["status", p.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["drifted"] == []

    # Another writer replaces day 2 with the same 40 rows after the compaction: that is a rewrite.
    write_deltalake(target, _rows("2024-01-02", 40), mode="overwrite", predicate="d = '2024-01-02'")
    assert audit(p.name, capsys) == (1, [("2024-01-02", "rewritten")])
    states = Ledger(Path(target).parent / "_backfill_progress").current(p.name)
    explained = explain_rewrites(read_snapshot(target, "d", Grain.DAY), "d", Grain.DAY, states)
    assert explained.changes is not None and explained.changes.after == before.version
    assert dict(explained.changes.latest) == {"2024-01-02": explained.version}  # the compaction changed no data


def test_where_the_log_was_cleaned_up_a_compaction_cannot_be_told_and_stays_a_rewrite(
    lake: tuple[Pipeline, str], capsys: pytest.CaptureFixture[str]
) -> None:
    p, target = lake
    recorded = read_snapshot(target, "d", Grain.DAY).version
    assert recorded is not None
    DeltaTable(target).optimize.compact()
    table = DeltaTable(target)
    table.create_checkpoint()
    # The log's retention removed the commit files up to the compaction's (the checkpoint stands for them).
    log = Path(target) / "_delta_log"
    for version in range(recorded + 1):
        (log / f"{version:020d}.json").unlink()
    (log / f"{recorded + 1:020d}.json").unlink()
    snapshot = with_data_changes(read_snapshot(target, "d", Grain.DAY), "d", Grain.DAY, recorded)
    assert snapshot.changes is not None and snapshot.changes.after == recorded + 1
    assert audit(p.name, capsys) == (1, [(k, "rewritten") for k in DAYS])  # wasteful, never wrong


def test_a_compacted_source_leaves_its_partitions_complete_and_new_rows_make_them_due(tmp_path: Path) -> None:
    """The plan of a real `backfill run` (no JVM: both logs read by delta-rs): each result's source files
    were recorded with the source version they were read at; a compaction of the source since is no
    reason to run again, new rows in a source partition are."""
    source, target = str(tmp_path / "bronze"), str(tmp_path / "silver" / "t")
    p = register(Pipeline("src_compacted", TableRef(source), TableRef(target), "d", keep, "1"), replace=True)
    for day in DAYS:
        write_deltalake(source, _rows(day, 20), mode="append", partition_by=["d"])
        write_deltalake(source, _rows(day, 20, 20), mode="append", partition_by=["d"])
        write_deltalake(target, _rows(day, 40), mode="append", partition_by=["d"])
    read = read_snapshot(source, "d", Grain.DAY)
    record_complete(tmp_path, p, read_snapshot(target, "d", Grain.DAY), read)

    def due() -> dict[str, str]:
        return {
            k: str(v)
            for k, v in prepare(BackfillRequest.build(pipeline=p.name, start=DAYS[0], end=DAYS[-1])).plan.why.items()
        }

    assert due() == {}
    DeltaTable(source).optimize.compact()
    assert all(read_snapshot(source, "d", Grain.DAY).digest(k) != read.digest(k) for k in DAYS)
    assert due() == {}  # compacted: other files, the same rows
    write_deltalake(source, _rows("2024-01-02", 1, 40), mode="append", partition_by=["d"])
    assert due() == {"2024-01-02": "source changed since it was written"}
