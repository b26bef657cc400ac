"""The canary gate as a deployment user meets it: a real `prefect server start`, `prefect deploy` from
prefect.yaml, a real process worker. A run with `canary: 1` writes its canary, pauses with the approval
form on its page, and the answer goes through the very call the UI's form makes (POST
/flow_runs/{id}/resume with the run input): approve writes the rest; reject stops the run, Failed with
the reason, canary written and the rest not."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.e2e.conftest import Server, stop_group
from tests.e2e.test_deployments import BIN, cli, start_worker, trigger, wait_final
from tests.e2e.test_events import write_bronze

pytestmark = pytest.mark.e2e

DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]


def wait_paused(server: Server, flow_run_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}", timeout=10).json()
        if run["state_type"] == "PAUSED":
            return run
        assert run["state_type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), run["state"]
        time.sleep(0.5)
    raise AssertionError(f"flow run {flow_run_id} did not pause at the canary gate within {timeout} s")


def answer(server: Server, flow_run_id: str, approve: bool, note: str = "") -> None:
    """What the UI's form on the paused flow run's page sends (again while the server answers 503 "busy",
    as Prefect's own client does: SQLite under a flow run's writes)."""
    deadline = time.monotonic() + 60
    while True:
        response = httpx.post(
            f"{server.api_url}/flow_runs/{flow_run_id}/resume",
            json={"run_input": {"decision": "approve" if approve else "reject", "note": note}},
            timeout=10,
        )
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert response.status_code in (200, 201), response.text
    assert response.json()["status"] == "ACCEPT", response.text


def test_the_gate_is_answered_on_the_flow_run_page_approve_then_reject(prefect_server: Server, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_bronze(data / "lake" / "bronze" / "orders", DAYS, rows_per_day=20)
    env = {
        "BACKFILL_DATA_DIR": str(data),
        "BACKFILL_RESULT_STORAGE_PATH": str(data / "results"),
        "BACKFILL_CANARY_POLL_SECONDS": "1",
    }
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", env=env)  # pools
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    ledger = Ledger(data / "lake" / "silver" / "_backfill_progress")
    worker = start_worker(prefect_server, env, tmp_path / "worker.log")
    try:
        params: dict[str, Any] = {"start": DAYS[0], "end": DAYS[-1], "window_end": None, "retries": 0, "canary": 1}
        approved = trigger(prefect_server, env, params)
        paused = wait_paused(prefect_server, approved)
        assert paused["state"]["state_details"]["run_input_keyset"], "no approval form on the paused run"
        # Paused after its canary (the middle day) only: the rest waits for the answer.
        assert {k: s.status for k, s in ledger.current("demo_orders").items()}["2024-01-02"] is Status.COMPLETE
        assert sum(s.status is Status.COMPLETE for s in ledger.current("demo_orders").values()) == 1
        answer(prefect_server, approved, approve=True)
        run = wait_final(prefect_server, approved, timeout=180)
        assert run["state_type"] == "COMPLETED", (tmp_path / "worker.log").read_text()[-3000:]
        assert {s.status for s in ledger.current("demo_orders").values()} == {Status.COMPLETE}

        rejected = trigger(prefect_server, env, {**params, "reprocess": "all"})
        wait_paused(prefect_server, rejected)
        answer(prefect_server, rejected, approve=False, note="amounts look off")
        run = wait_final(prefect_server, rejected, timeout=180)
    finally:
        stop_group(worker)
    assert run["state_type"] == "FAILED"
    assert "rejected (operator): amounts look off" in run["state"]["message"]
    latest = ledger.current("demo_orders")
    assert latest["2024-01-02"].run_id == rejected and latest["2024-01-02"].status is Status.COMPLETE  # the canary
    for day in ("2024-01-01", "2024-01-03"):  # the rest: not written by the rejected run (claimed, then left)
        assert not (latest[day].run_id == rejected and latest[day].status is Status.COMPLETE), latest[day]
