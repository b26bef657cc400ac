"""Events and the automation built on them, as users run them: a real `prefect server start`, the set-up
script, `prefect deploy` from prefect.yaml, a real process worker. A backfill in which one partition fails
a check before commit sends its events to the server (read back through the API the UI uses), and the
automation pauses the deployment (its schedule) until `deployments.setup --resume` resumes it."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from prefect_backfill.events import CHECK_FAILED, COMPLETED, RUN_FINISHED
from tests.e2e.conftest import Server, stop_group
from tests.e2e.event_pipelines import EMPTY_DAY, NAME
from tests.e2e.test_deployments import BIN, cli, start_worker, trigger, wait_final
from tests.event_reading import wait_for_events

pytestmark = pytest.mark.e2e

DEPLOYMENT = "backfill/demo-orders"


def write_bronze(path: Path, days: list[str], rows_per_day: int) -> None:
    """The demo's bronze orders for ``days``, written with delta-rs: no JVM in the test process (the flow
    run's process starts the one Spark the test needs)."""
    rows = [
        {"order_id": i * rows_per_day + n, "order_date": date.fromisoformat(day), "customer_id": n, "amount": 10.0 + n}
        for i, day in enumerate(days)
        for n in range(rows_per_day)
    ]
    schema = pa.schema(
        [("order_id", pa.int64()), ("order_date", pa.date32()), ("customer_id", pa.int64()), ("amount", pa.float64())]
    )
    write_deltalake(str(path), pa.Table.from_pylist(rows, schema=schema), partition_by=["order_date"])


def deployment(server: Server) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{server.api_url}/deployments/name/{DEPLOYMENT}", timeout=10).json()
    return answer


def test_a_failed_check_reaches_the_server_and_pauses_the_backfill_deployment(
    prefect_server: Server, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_bronze(data / "lake" / "bronze" / "orders", ["2024-01-01", "2024-01-02", "2024-01-03"], rows_per_day=20)
    env = {
        "BACKFILL_DATA_DIR": str(data),
        "BACKFILL_RESULT_STORAGE_PATH": str(data / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo,tests.e2e.event_pipelines",
    }
    setup = cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", env=env)
    assert "pause a backfill deployment when a partition fails a check" in setup.stdout
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    assert deployment(prefect_server)["paused"] is False

    since = datetime.now(UTC)
    worker = start_worker(prefect_server, env, tmp_path / "worker.log")
    try:
        params = {"pipeline": NAME, "start": "2024-01-01", "end": "2024-01-03", "window_end": None, "retries": 0}
        flow_run_id = trigger(prefect_server, env, params)
        run = wait_final(prefect_server, flow_run_id, timeout=180)
    finally:
        stop_group(worker)
    assert run["state_type"] == "FAILED", (tmp_path / "worker.log").read_text()[-3000:]

    found = wait_for_events(
        NAME,
        since,
        lambda es: {CHECK_FAILED, RUN_FINISHED} <= {e.event for e in es},
        api_url=prefect_server.api_url,
    )
    (check,) = [e for e in found if e.event == CHECK_FAILED]
    assert check.resource.id == f"prefect-backfill.partition.{NAME}.{EMPTY_DAY}"
    assert check.resource["prefect-backfill.check"] == "non_empty_output"
    related = {r.id: r.role for r in check.related}
    deployment_id = deployment(prefect_server)["id"]
    # Prefect related the event to the run's deployment, flow run and tags: the automation needs them.
    assert related[f"prefect.deployment.{deployment_id}"] == "deployment"
    assert related[f"prefect.flow-run.{flow_run_id}"] == "flow-run"
    assert related["prefect.tag.backfill"] == "tag"
    (done,) = [e for e in found if e.event == COMPLETED]  # the two good days: one commit, one event
    assert done.resource.id == f"prefect-backfill.partition.{NAME}.2024-01-01..2024-01-02"
    assert [p["partition"] for p in done.payload["partitions"]] == ["2024-01-01", "2024-01-02"]
    assert done.payload["rows_out"] == 40 and done.payload["table_version"] is not None
    (finished,) = [e for e in found if e.event == RUN_FINISHED]
    assert (finished.payload["outcome"], finished.payload["completed"], finished.payload["failed"]) == ("failed", 2, 1)

    # The automation paused the deployment: its schedule makes no more runs.
    deadline = time.monotonic() + 30
    while not deployment(prefect_server)["paused"]:
        assert time.monotonic() < deadline, "the check-failed automation did not pause the deployment within 30 s"
        time.sleep(0.5)
    scheduled = httpx.post(
        f"{prefect_server.api_url}/flow_runs/filter",
        json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}, "state": {"type": {"any_": ["SCHEDULED"]}}}},
        timeout=10,
    ).json()
    assert [r for r in scheduled if r.get("auto_scheduled")] == []

    resumed = cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", "--resume", DEPLOYMENT, env=env)
    assert "resumed" in resumed.stdout
    assert deployment(prefect_server)["paused"] is False
    unknown = subprocess.run(
        [str(BIN / "python"), "-m", "deployments.setup", "--resume", "backfill/nope"],
        env={**prefect_server.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("error: no deployment 'backfill/nope'")
    assert len(unknown.stderr.strip().splitlines()) == 1
