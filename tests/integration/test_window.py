"""Night-only windows: the window closes mid-run; running partitions finish, the rest waits for the
next run, and the run ends in a named non-failed state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from flows.backfill import backfill
from prefect_backfill import window
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark


class ClosingClock:
    """Real time until ``after`` partitions of the pipeline are complete in the ledger; then the
    window is over. Deterministic at max_concurrency 1: the third partition is asked about only once
    the second has finished."""

    def __init__(self, ledger: Ledger, pipeline: str, deadline: datetime, after: int) -> None:
        self.ledger, self.pipeline, self.deadline, self.after = ledger, pipeline, deadline, after

    def __call__(self) -> datetime:
        done = sum(1 for s in self.ledger.current(self.pipeline).values() if s.status is Status.COMPLETE)
        return self.deadline + timedelta(seconds=1) if done >= self.after else datetime.now(UTC)


def test_window_closes_mid_run_and_the_next_run_finishes(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    p = lake.make(to_silver_orders)
    deadline = datetime.now(UTC) + timedelta(hours=1)
    monkeypatch.setattr(window, "clock", ClosingClock(Ledger(lake.ledger), p.name, deadline, after=2))
    state = backfill(
        pipeline=p.name,
        start="2024-01-01",
        end="2024-01-05",
        max_concurrency=1,
        chunk_partitions=1,  # one partition per job, so the window can close between them
        window_end=deadline.isoformat(),
        return_state=True,
    )
    assert state.is_completed() and state.name == "WindowClosed"
    assert "3 partitions remain; the next run resumes" in (state.message or "")
    summary = state.result().to_dict()
    assert sorted(summary["completed"]) == ["2024-01-01", "2024-01-02"]
    assert summary["not_started"] == ["2024-01-03", "2024-01-04", "2024-01-05"]
    current = Ledger(lake.ledger).current(p.name)
    assert {k for k, s in current.items() if s.status is Status.PENDING} == {"2024-01-03", "2024-01-04", "2024-01-05"}

    monkeypatch.setattr(window, "clock", window.system_clock)
    after = backfill(pipeline=p.name, start="2024-01-01", end="2024-01-05", window_end=deadline.isoformat()).to_dict()
    assert sorted(after["completed"]) == ["2024-01-03", "2024-01-04", "2024-01-05"] and after["skipped"] == 2
    assert {s.status for s in Ledger(lake.ledger).current(p.name).values()} == {Status.COMPLETE}
