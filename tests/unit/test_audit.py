"""The ledger against the table, in pure logic (drift kinds, plan reasons, the audit report, the calendar
cell) and through the CLI on real Delta tables written by delta-rs (no Spark: `audit` and `status` of a
path target need no JVM). The engine's side (digests recorded at commit, repair by a plain run) is
tests/integration/test_audit.py."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from prefect_backfill.audit import audit
from prefect_backfill.calendar import Cell, build_grid, cell_of
from prefect_backfill.cli import run_cli
from prefect_backfill.drift import DriftKind, is_target_drift, target_drift
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import PartitionState, Reprocess, Status, make_plan
from prefect_backfill.registry import register
from prefect_backfill.snapshots import PartitionFiles, TableSnapshot
from prefect_backfill.tables import read_snapshot

FP = "1:abc"
T0 = datetime(2024, 7, 1, tzinfo=UTC)


def snap(**parts: tuple[str, int | None]) -> TableSnapshot:
    """A target snapshot: partition key (underscores for dashes) → (digest, live rows)."""
    return TableSnapshot(
        True,
        "tid",
        7,
        {k.lstrip("_").replace("_", "-"): PartitionFiles(digest, 100, rows) for k, (digest, rows) in parts.items()},
    )


def done(key: str, rows: int | None = 40, digest: str | None = "d1", fingerprint: str = FP) -> PartitionState:
    return PartitionState(
        key,
        Status.COMPLETE,
        fingerprint,
        fingerprint.split(":")[0],
        "run-aaaaaaaa",
        T0,
        rows_out=rows,
        target_id="tid",
        source_digest=None,
        table_version=3,
        target_digest=digest,
    )


def kind(key: str, target: TableSnapshot, state: PartitionState) -> DriftKind | None:
    drift = target_drift(key, target, rows=state.rows_out, digest=state.target_digest, target_id=state.target_id)
    return drift.kind if drift is not None else None


def test_each_kind_of_drift_is_told_apart() -> None:
    target = snap(a=("d1", 40), b=("d1", 0), c=("d1", 35), d=("d2", 40), e=("d2", 35))
    assert kind("a", target, done("a")) is None  # what was written is there
    assert kind("b", target, done("b")) is DriftKind.EMPTY
    assert kind("c", target, done("c")) is DriftKind.ROWS
    assert kind("d", target, done("d")) is DriftKind.REWRITTEN
    assert kind("e", target, done("e")) is DriftKind.ROWS  # the row count says more than "other files"
    assert kind("x", target, done("x")) is DriftKind.MISSING
    assert kind("a", TableSnapshot(exists=False), done("a")) is DriftKind.TARGET_MISSING
    assert kind("a", TableSnapshot(True, "other", 1, {}), done("a")) is DriftKind.TARGET_RECREATED


def test_what_cannot_be_told_is_not_drift() -> None:
    target = snap(a=("d2", 40), b=("d1", None))
    # An older release recorded no digest: a rewrite with the same rows cannot be told.
    assert kind("a", target, done("a", digest=None)) is None
    # ...but a missing partition or another row count still can.
    assert kind("x", target, done("x", digest=None)) is DriftKind.MISSING
    assert kind("a", target, done("a", rows=41, digest=None)) is DriftKind.ROWS
    # Files without statistics: rows unknown, the digest still decides.
    assert kind("b", target, done("b")) is None
    assert kind("b", target, done("b", digest="d0")) is DriftKind.REWRITTEN
    # An allowed-empty partition that is still empty; an unreadable log.
    assert kind("x", target, done("x", rows=0, digest="")) is None
    assert kind("a", TableSnapshot.unknown(), done("a", rows=1, digest="zz")) is None
    # Rows written where the ledger says none were: another writer added them.
    assert kind("a", target, done("a", rows=0, digest="")) is DriftKind.ROWS


def test_drift_is_due_under_the_default_policy_with_its_reason() -> None:
    parts = partitions_between("2024-01-01", "2024-01-04", Grain.DAY)
    current = {
        "2024-01-01": done("2024-01-01"),
        "2024-01-02": done("2024-01-02"),
        "2024-01-03": done("2024-01-03"),
        "2024-01-04": done("2024-01-04", digest=None),  # older release
    }
    target = snap(_2024_01_01=("d1", 40), _2024_01_02=("d2", 40), _2024_01_04=("zz", 40))
    plan = make_plan("p", FP, parts, current, Reprocess.MISSING, target=target)
    assert dict(plan.why) == {
        "2024-01-02": "partition rewritten by another writer (the same 40 rows, not the files it wrote)",
        "2024-01-03": "partition missing from the target",
    }
    assert all(is_target_drift(reason) for reason in plan.why.values())
    assert not is_target_drift("never run") and not is_target_drift("stale: written by version 1")
    assert "  run:  1 partition rewritten by another writer" in str(plan)
    # `failed` leaves drift alone, as it leaves everything but failures.
    assert make_plan("p", FP, parts, current, Reprocess.FAILED, target=target).to_run == ()


def test_the_report_says_what_the_ledger_says_and_what_the_table_holds() -> None:
    keys = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    states = {
        "2024-01-01": done("2024-01-01"),
        "2024-01-02": done("2024-01-02"),
        "2024-01-03": done("2024-01-03", fingerprint="0:old"),  # stale versions are audited too
        "2024-01-04": done("2024-01-04", digest=None),
        "2024-01-05": PartitionState("2024-01-05", Status.FAILED, FP, "1", "r", T0),
    }
    target = snap(_2024_01_01=("d1", 40), _2024_01_02=("d1", 12), _2024_01_04=("q", 40), _2024_01_05=("q", 3))
    report = audit("p", "/lake/t", keys, states, target)
    assert report.checked == 4 and report.unverified == ("2024-01-04",) and not report.clean
    assert [(f.partition, f.kind) for f in report.findings] == [
        ("2024-01-02", DriftKind.ROWS),
        ("2024-01-03", DriftKind.MISSING),
    ]
    rows = report.findings[0]
    assert rows.ledger_says == "40 rows (run run-aaaa, commit v3)"
    assert rows.table_holds == "12 rows"
    assert report.findings[1].table_holds == "no files"
    assert report.repair_command == "backfill run p --partitions 2024-01-02,2024-01-03"
    as_dict = report.to_dict()
    assert as_dict["findings"][0]["expected"]["rows"] == 40 and as_dict["findings"][0]["found"]["rows"] == 12
    assert audit("p", "/lake/t", keys, {"2024-01-01": done("2024-01-01")}, target).clean


def test_a_drifted_partition_has_a_cell_of_its_own() -> None:
    state = done("2024-01-02")
    assert cell_of(state, FP, drifted=True) is Cell.DRIFTED
    assert cell_of(state, FP) is Cell.COMPLETE
    parts = partitions_between("2024-01-01", "2024-01-03", Grain.DAY)
    grid = build_grid(parts, {p.key: done(p.key) for p in parts}, FP, drifted={"2024-01-02"})
    assert grid.totals[Cell.DRIFTED] == 1 and grid.totals[Cell.COMPLETE] == 2


# -- the CLI on real Delta tables (delta-rs, no JVM) --------------------------------------------------


def keep(df):  # type: ignore[no-untyped-def]
    return df


def _write_day(target: str, day: int, n: int, mode: str = "append") -> None:
    """Rows of one day, written by delta-rs (another writer, as far as the ledger knows)."""
    data = pa.table({"id": list(range(n)), "d": [date(2024, 1, day)] * n})
    if mode == "overwrite":  # another writer replaces one day, as a replaceWhere does
        write_deltalake(target, data, mode="overwrite", partition_by=["d"], predicate=f"d = '2024-01-{day:02d}'")
    else:
        write_deltalake(target, data, mode="append", partition_by=["d"])


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Pipeline, str, Ledger]:
    """Days 1-3 written (40 rows each) and recorded COMPLETE with their digests, as a run records them."""
    target = str(tmp_path / "silver" / "t")
    p = register(
        Pipeline("audit_cli", TableRef(str(tmp_path / "bronze")), TableRef(target), "d", keep, "1"), replace=True
    )
    for day in (1, 2, 3):
        _write_day(target, day, 40)
    snapshot = read_snapshot(target, "d", Grain.DAY)
    ledger = Ledger(tmp_path / "silver" / "_backfill_progress")
    ledger.record(
        [
            LedgerEvent(
                "run-1",
                p.name,
                key,
                Status.COMPLETE,
                "1",
                p.fingerprint,
                rows_out=40,
                target_id=snapshot.table_id,
                target_digest=snapshot.digest(key),
                table_version=snapshot.version,
            )
            for key in ("2024-01-01", "2024-01-02", "2024-01-03")
        ]
    )
    return p, target, ledger


def test_audit_cli_clean_then_drift_exit_codes_and_json(
    lake: tuple[Pipeline, str, Ledger], capsys: pytest.CaptureFixture[str]
) -> None:
    p, target, _ = lake
    assert run_cli(["audit", p.name]) == 0
    assert "clean: the table holds what the ledger says" in capsys.readouterr().out

    _write_day(target, 2, 40, mode="overwrite")  # another writer: same rows, other files
    _write_day(target, 3, 7, mode="overwrite")  # another writer: other rows
    assert run_cli(["audit", p.name, "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [(f["partition"], f["kind"]) for f in out["findings"]] == [
        ("2024-01-02", "rewritten"),
        ("2024-01-03", "rows"),
    ]
    assert out["findings"][1]["expected"]["rows"] == 40 and out["findings"][1]["found"]["rows"] == 7
    assert out["repair_command"] == f"backfill run {p.name} --partitions 2024-01-02,2024-01-03"

    assert run_cli(["audit", p.name, "--start", "2024-01-01", "--end", "2024-01-02"]) == 1
    text = capsys.readouterr().out
    assert "2024-01-02" in text and "rewritten" in text and "2024-01-03" not in text
    assert "not an error of this tool" in text and f"repair with: backfill run {p.name} --partitions 2024-01-02" in text

    # status shows them as drifted, in the counts, the calendar and its JSON (no Spark: delta-rs only).
    assert run_cli(["status", p.name, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [f["partition"] for f in status["drifted"]] == ["2024-01-02", "2024-01-03"] and status["drift_checked"]
    assert run_cli(["status", p.name]) == 0
    text = capsys.readouterr().out
    assert "DRIFTED 2024-01-03: row count in the target differs from the ledger (7 rows, the ledger says 40)\n" in text
    assert f"{Cell.DRIFTED.mark} {Cell.DRIFTED.label}: 2" in text


def test_audit_of_a_pipeline_without_events_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = register(
        Pipeline("audit_none", TableRef(str(tmp_path / "b")), TableRef(str(tmp_path / "silver" / "t")), "d", keep, "1"),
        replace=True,
    )
    assert run_cli(["audit", p.name]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert captured.err.startswith(f"error: {p.name} has no events in its ledger")
    assert run_cli(["audit", p.name, "--json"]) == 2
    captured = capsys.readouterr()
    assert "has no events" in json.loads(captured.out)["error"] and len(captured.err.strip().splitlines()) == 1
    assert not (tmp_path / "silver").exists()  # nothing written: no ledger, no lease table
