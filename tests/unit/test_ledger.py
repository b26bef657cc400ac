"""The ledger on real Delta tables (delta-rs, no Spark)."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prefect_backfill import stopping
from prefect_backfill.errors import LedgerError
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.planning import Status


def ev(partition: str, status: Status, at: datetime, run: str = "r1", **kw: object) -> LedgerEvent:
    return LedgerEvent(run, "orders", partition, status, "2", "2:abc", event_time=at, **kw)  # type: ignore[arg-type]


def test_empty_or_missing_ledger_has_no_state(tmp_path: Path) -> None:
    assert Ledger(tmp_path / "nope").current("orders") == {}


def test_latest_event_wins_and_pipelines_are_separate(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    t = datetime(2024, 7, 1, tzinfo=UTC)
    ledger.record([ev("2024-01-01", Status.PENDING, t), ev("2024-01-02", Status.PENDING, t)])
    ledger.record([ev("2024-01-01", Status.RUNNING, t + timedelta(seconds=1))])
    ledger.record([ev("2024-01-01", Status.COMPLETE, t + timedelta(seconds=2), rows_out=10)])
    ledger.record([ev("2024-01-02", Status.FAILED, t + timedelta(seconds=3), error="boom")])
    ledger.record([LedgerEvent("r9", "other", "2024-01-01", Status.FAILED, "1", "1:x", event_time=t)])
    state = ledger.current("orders")
    assert state["2024-01-01"].status is Status.COMPLETE and state["2024-01-01"].rows_out == 10
    assert state["2024-01-02"].status is Status.FAILED and state["2024-01-02"].error == "boom"
    assert ledger.current("other")["2024-01-01"].status is Status.FAILED
    assert ledger.events("orders").num_rows == 5


def test_terminal_event_beats_running_at_the_same_instant(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    t = datetime(2024, 7, 1, tzinfo=UTC)
    ledger.record([ev("d", Status.COMPLETE, t), ev("d", Status.RUNNING, t)])
    assert ledger.current("orders")["d"].status is Status.COMPLETE


def test_parallel_writers_lose_no_event(tmp_path: Path) -> None:
    """Four threads with a ledger object each (as separate tasks would have) and a fifth sharing one."""
    path = tmp_path / "ledger"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        ledger = Ledger(path)
        try:
            for i in range(15):
                ledger.record([ev(f"p{n}-{i}", Status.RUNNING, datetime.now(UTC))])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Ledger(path).events("orders").num_rows == 60
    Ledger(path).compact()
    assert len(Ledger(path).current("orders")) == 60


def test_unwaited_events_are_committed_in_order_before_later_waited_ones(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger")
    t = datetime(2024, 7, 1, tzinfo=UTC)
    for i in range(20):
        ledger.record([ev(f"p{i}", Status.RUNNING, t)], wait=False)
    ledger.record([ev("p0", Status.COMPLETE, t + timedelta(seconds=1))])
    assert ledger.events("orders").num_rows == 21  # the waited event came after every queued one
    ledger.record([ev("p1", Status.COMPLETE, t + timedelta(seconds=1))], wait=False)
    ledger.flush()
    state = ledger.current("orders")
    assert state["p0"].status is Status.COMPLETE and state["p1"].status is Status.COMPLETE


class RustPanic(BaseException):
    """What pyo3 raises for a panic in delta-rs: a BaseException (``pyo3_runtime.PanicException``, whose
    class cannot be imported); the name is not what tells it apart."""


def test_a_panic_reading_the_ledger_is_one_ledger_error_and_a_stop_stays_a_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect_backfill.ledger as module

    ledger = Ledger(tmp_path / "ledger")
    ledger.record([ev("d", Status.PENDING, datetime(2024, 7, 1, tzinfo=UTC))])

    def raising(error: BaseException) -> object:
        def open_table(*args: object, **kwargs: object) -> object:
            raise error

        return open_table

    monkeypatch.setattr(module, "DeltaTable", raising(RustPanic("called `Option::unwrap()` on a `None` value")))
    with pytest.raises(LedgerError, match="cannot be read"):
        ledger.events("orders")
    for stop in (KeyboardInterrupt(), SystemExit(1), stopping.Interrupted(), ValueError("not the ledger's")):
        monkeypatch.setattr(module, "DeltaTable", raising(stop))
        with pytest.raises(type(stop)):
            ledger.events("orders")
