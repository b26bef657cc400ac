"""The daily pipeline is never blocked by a backfill: with every slot of the pipeline's cap held by a live
backfill run on the same target, the daily flow (flows/daily.py, what the `demo-orders-daily` deployment
runs) starts its partition at once and completes it, and holds no slot a backfill could wait for.

What this does not show: the same through two process workers on their own pools of a real server, with the
delay measured (issue "cascade and fan-out", item 3)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flows.daily import daily
from prefect_backfill.coordination import target_key
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.leases import LeaseTable, RunLease, lease_location
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.planning import Status
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark


def test_the_daily_run_does_not_wait_for_a_backfill_holding_every_slot(
    lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKFILL_WAIT_TIMEOUT", "5")  # a run in the cap would give up after 5 s, exit 4
    pipeline = lake.make(to_silver_orders)
    leases = LeaseTable(lease_location(lake.ledger))
    with RunLease(leases, "night-backfill", pipeline.name, target_key(pipeline.target)) as night:
        night.renew(slots=1_000)  # every slot of any cap
        started = time.monotonic()
        summary = daily(pipeline=pipeline.name, partition="2024-01-05", retries=0)
        elapsed = time.monotonic() - started
        assert leases.live_runs(target_key(pipeline.target), pipeline.name)["night-backfill"].slots == 1_000
        # A day the backfill has claimed stays its own: the daily run says so in its state, not a plain Completed.
        claimed = LedgerEvent("night-backfill", pipeline.name, "2024-01-06", Status.PENDING, "1", pipeline.fingerprint)
        Ledger(lake.ledger).record([claimed])
        state = daily(pipeline=pipeline.name, partition="2024-01-06", retries=0, return_state=True)
        assert state.name == "PartlyHeld" and "held by a live backfill run" in (state.message or ""), state
    assert list(summary.completed) == ["2024-01-05"], summary
    assert Ledger(lake.ledger).current(pipeline.name)["2024-01-05"].status is Status.COMPLETE
    print(f"daily run beside a backfill holding every slot: {elapsed:.1f} s")
