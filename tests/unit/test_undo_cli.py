"""`backfill undo`'s conversation around the undo itself: the confirmation prompt in a terminal, the
refusal to act without one, exit codes. The undo is replaced by a stand-in (the real one, on real Spark +
Delta, is tests/integration/test_undo.py); the plan printed is the real planner's."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import prefect_backfill.cli.live as cli
import prefect_backfill.cli.undo as undo_cli
import prefect_backfill.restoring as undoing
from prefect_backfill.cli import run_cli
from prefect_backfill.restoring import UndoOutcome
from prefect_backfill.results import BackfillSummary
from prefect_backfill.undo_planning import Refusal, Restore, UndoPlan


class Calls:
    def __init__(self) -> None:
        self.carried_out = 0


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> Calls:
    calls = Calls()
    undo_plan = UndoPlan(
        "orders",
        "run-1234-5678",
        (Restore("2024-01-01", 3, 4, rows=40),),
        (Refusal("2024-01-02", "changed after the run's commit (version 4) by version 6 (OPTIMIZE)", True),),
    )

    class Prepared:
        plan = undo_plan
        pipeline = type("P", (), {"name": "orders"})()

    def prepare(*args: Any, **kw: Any) -> Any:
        return Prepared()

    def carry_out(prepared: Any) -> UndoOutcome:
        calls.carried_out += 1
        return UndoOutcome("undo-1", ("2024-01-01",), 7)

    monkeypatch.setattr(undoing, "prepare_undo", prepare)
    monkeypatch.setattr(undoing, "carry_out", carry_out)
    return calls


def test_a_terminal_is_asked_and_no_writes_nothing(
    stand_in: Calls, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(undo_cli, "_stdin_is_terminal", lambda: True)
    asked: list[str] = []
    monkeypatch.setattr(undo_cli.typer, "confirm", lambda text, default: asked.append(text) or False)
    assert run_cli(["undo", "orders", "--run", "run-1234"]) == 1
    out = capsys.readouterr().out
    assert asked == ["Restore 1 partition(s) of orders?"]
    assert "restore 2024-01-01 to version 3, 40 rows" in out and "refuse  2024-01-02: changed after" in out
    assert "nothing was written" in out and stand_in.carried_out == 0


def test_yes_restores_and_refusals_still_exit_1(stand_in: Calls, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["undo", "orders", "--run", "run-1234", "--yes"]) == 1 and stand_in.carried_out == 1
    out, err = capsys.readouterr()
    assert "restored 1 partition(s) of orders in one commit (version 7)" in out
    assert err.startswith("error: undo of run run-1234-5678 of orders restored 1 partition(s) and refused 1")


def test_without_a_terminal_it_asks_for_yes_and_writes_nothing(
    stand_in: Calls, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["undo", "orders", "--run", "run-1234", "--json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass --yes" in err and stand_in.carried_out == 0


def test_a_run_that_wrote_something_says_how_to_undo_it(capsys: pytest.CaptureFixture[str]) -> None:
    summary = BackfillSummary(
        pipeline="orders",
        run_id="0b1c2d3e-aaaa-bbbb",
        start="2024-01-01",
        end="2024-01-01",
        fingerprint="f",
        completed=("2024-01-01",),
        skipped=0,
        total=1,
        rows_written=40,
        duration_s=1.0,
    )
    cli._print_summary(summary)
    assert "run 0b1c2d3e-aaaa-bbbb: undo it with `backfill undo orders --run 0b1c2d3e`" in capsys.readouterr().out
    cli._print_summary(dataclasses.replace(summary, completed=()))
    assert "undo it" not in capsys.readouterr().out


@pytest.mark.parametrize(("signum", "code"), [(2, 130), (15, 143)])
def test_a_signal_during_the_restore_cancels_it_and_says_nothing_was_written(
    stand_in: Calls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: int,
    code: int,
) -> None:
    """Ctrl-C (or SIGTERM) while the restore's Spark job runs: the job is cancelled (its one commit never
    happens) instead of the CLI dying while the JVM goes on to commit."""
    import os
    import threading

    cancelled = threading.Event()
    monkeypatch.setattr(undo_cli, "_cancel_running", lambda prepared: cancelled.set())

    def restore_until_cancelled(prepared: Any) -> UndoOutcome:
        threading.Timer(0.2, os.kill, args=(os.getpid(), signum)).start()
        assert cancelled.wait(10), "the signal did not cancel the restore"
        raise RuntimeError("[SPARK_JOB_CANCELLED] the restore's job was cancelled")

    monkeypatch.setattr(undoing, "carry_out", restore_until_cancelled)
    assert run_cli(["undo", "orders", "--run", "run-1234", "--yes"]) == code
    out = capsys.readouterr().out
    assert "the restore was cancelled before its commit, nothing was written" in out
