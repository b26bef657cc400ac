"""`backfill status` on a ledger with every kind of partition; reads only the ledger (no Spark)."""

import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from prefect_backfill.cli import main
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Status
from prefect_backfill.registry import register


def keep(df):  # type: ignore[no-untyped-def]
    return df


@pytest.fixture
def mixed(tmp_path: Path) -> Pipeline:
    """2024-01-01..05 complete (v2), 06 failed, 07 running, 08 pending, 09-10 complete at v1 (stale), 11 never."""
    p = register(
        Pipeline("status_demo", str(tmp_path / "b"), str(tmp_path / "silver" / "t"), "d", keep, "2"), replace=True
    )
    # The target holds the days the ledger says were written (status compares them: see test_audit.py).
    days = [date(2024, 1, d) for d in range(1, 11)]
    write_deltalake(str(tmp_path / "silver" / "t"), pa.table({"id": list(range(10)), "d": days}), partition_by=["d"])
    ledger = Ledger(tmp_path / "silver" / "_backfill_progress")
    t0 = datetime(2024, 7, 1, tzinfo=UTC)
    events = []
    for day, status, fingerprint in [
        *[(d, Status.COMPLETE, p.fingerprint) for d in range(1, 6)],
        (6, Status.FAILED, p.fingerprint),
        (7, Status.RUNNING, p.fingerprint),
        (8, Status.PENDING, p.fingerprint),
        (9, Status.COMPLETE, "1:old"),
        (10, Status.COMPLETE, "1:old"),
    ]:
        events.append(
            LedgerEvent(
                "run-1",
                p.name,
                f"2024-01-{day:02d}",
                status,
                fingerprint.split(":")[0],
                fingerprint,
                event_time=t0 + timedelta(seconds=day),
                duration_s=60.0 if status is Status.COMPLETE else None,
                error="boom: bad row" if status is Status.FAILED else None,
            )
        )
    ledger.record(events)
    return p


@pytest.fixture
def live_run_1(mixed: Pipeline, tmp_path: Path):  # type: ignore[no-untyped-def]
    """run-1 holds a live lease (taken by this very process, renewed by its heartbeat)."""
    from prefect_backfill.coordination import target_key
    from prefect_backfill.leases import LeaseTable, RunLease, lease_location

    table = LeaseTable(lease_location(str(tmp_path / "silver" / "_backfill_progress")))
    with RunLease(table, "run-1", mixed.name, target_key(mixed.target)):
        yield


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["backfill", *args])
    main()
    return capsys.readouterr().out


def test_status_json_counts_every_kind(
    mixed: Pipeline, live_run_1: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = json.loads(run_cli(monkeypatch, capsys, "status", mixed.name, "--end", "2024-01-11", "--json"))
    assert out["counts"] == {"PENDING": 1, "RUNNING": 1, "COMPLETE": 7, "FAILED": 1, "UNDONE": 0, "STALE": 0}
    assert out["never_run"] == 1
    assert out["stale"] == ["2024-01-09", "2024-01-10"]
    assert out["failed"] == [{"partition": "2024-01-06", "error": "boom: bad row", "check": None}]
    assert out["eta_seconds"] == 120.0  # 2 left (running + pending), 1 in flight, 60 s each from history
    assert out["recorded"] is True
    assert [r["run_id"] for r in out["live_runs"]] == ["run-1"] and out["interrupted"] == []


def test_status_says_interrupted_not_running_when_the_claiming_run_is_dead(
    mixed: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = json.loads(run_cli(monkeypatch, capsys, "status", mixed.name, "--json"))
    assert out["live_runs"] == [] and out["eta_seconds"] is None
    assert out["interrupted"] == ["2024-01-07", "2024-01-08"]
    monkeypatch.setenv("COLUMNS", "200")
    text = run_cli(monkeypatch, capsys, "status", mixed.name)
    assert "running backfill" not in text
    assert "INTERRUPTED 2 partition(s) left PENDING/RUNNING by runs that are no longer alive" in text


def test_status_shows_calendar_failures_stale_and_eta(
    mixed: Pipeline, live_run_1: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    out = run_cli(monkeypatch, capsys, "status", mixed.name, "--start", "2024-01-01", "--end", "2024-01-11")
    assert "January 2024" in out
    assert " 1✅" in out and " 6❌" in out and " 7⏳" in out and " 8🕓" in out and " 9🟨" in out and "11⬜" in out
    assert "FAILED 2024-01-06: boom: bad row" in out
    assert "STALE (written by an older version): 2024-01-09, 2024-01-10" in out
    assert "running backfill: run run-1 (host" in out
    assert "2 partitions claimed by live runs: 2 left, ETA 2m 00s" in out


def test_status_shows_the_live_runs_on_its_target_whatever_their_pipeline(
    mixed: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A live run of an alias (another pipeline on the same target) is running on this table; a live run of
    a pipeline on another target is not."""
    from prefect_backfill.coordination import target_key
    from prefect_backfill.leases import LeaseTable, RunLease, lease_location

    table = LeaseTable(lease_location(str(tmp_path / "silver" / "_backfill_progress")))
    with (
        RunLease(table, "alias-run", "status_demo_alias", target_key(mixed.target)),
        RunLease(table, "elsewhere", "status_other", str(tmp_path / "silver" / "other")),
    ):
        out = json.loads(run_cli(monkeypatch, capsys, "status", mixed.name, "--json"))
        assert [(r["run_id"], r["pipeline"]) for r in out["live_runs"]] == [("alias-run", "status_demo_alias")]
        monkeypatch.setenv("COLUMNS", "200")
        text = run_cli(monkeypatch, capsys, "status", mixed.name)
    assert "running backfill: run alias-ru" in text and "of pipeline status_demo_alias" in text
    assert "elsewhere" not in text
