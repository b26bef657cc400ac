"""Deployments as users run them: a real `prefect server start`, the set-up script, `prefect deploy`
from prefect.yaml, a real process worker, `prefect deployment run … --params`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.e2e.conftest import Server, stop_group

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def cli(server: Server, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(args), cwd=ROOT, env={**server.env, **(env or {})}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


def wait_final(server: Server, flow_run_id: str, timeout: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = httpx.get(f"{server.api_url}/flow_runs/{flow_run_id}").json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return run  # type: ignore[no-any-return]
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish in {timeout} s")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    from prefect_backfill.demo import generate_orders

    data = tmp_path / "data"
    generate_orders(str(data / "lake" / "bronze" / "orders"), "2024-01-01", "2024-01-04", rows_per_day=30)
    return data


def test_deploy_from_prefect_yaml_and_run_with_parameters(prefect_server: Server, lake: Path) -> None:
    env = {
        "BACKFILL_DATA_DIR": str(lake),
        "BACKFILL_RESULT_STORAGE_PATH": str(lake / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo",
    }
    first = cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", "--cap", "3", env=env)
    assert "pool backfill (created), queue backfill priority 10" in first.stdout
    again = cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", "--cap", "3", env=env)
    assert "pool backfill (exists)" in again.stdout and "limit backfill-demo-orders = 3" in again.stdout
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)

    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "backfill", "--type", "process"],
        cwd=ROOT,
        env={**prefect_server.env, **env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_HOME": str(lake / "worker")},
        stdout=(lake / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        params = {"start": "2024-01-01", "end": "2024-01-04", "window_end": None, "max_concurrency": 2}
        triggered = cli(
            prefect_server,
            str(BIN / "prefect"),
            "deployment",
            "run",
            "backfill/demo-orders",
            "--params",
            json.dumps(params),
            env=env,
        )
        flow_run_id = next(
            line.split(":", 1)[1].strip() for line in triggered.stdout.splitlines() if line.strip().startswith("UUID")
        )
        run = wait_final(prefect_server, flow_run_id)
        assert run["state_type"] == "COMPLETED", (lake / "worker.log").read_text()[-3000:]
        assert run["parameters"]["pipeline"] == "demo_orders" and run["parameters"]["end"] == "2024-01-04"
    finally:
        stop_group(worker)

    target = lake / "lake" / "silver" / "orders"
    files = pa.table(DeltaTable(str(target)).get_add_actions()).to_pylist()
    assert {str(f["partition"]["order_date"]) for f in files} == {
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
    }
    assert sum(f["num_records"] for f in files) == 120
    current = Ledger(lake / "lake" / "silver" / "_backfill_progress").current("demo_orders")
    assert sorted(current) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert {s.status for s in current.values()} == {Status.COMPLETE}
    assert sum(s.rows_out or 0 for s in current.values()) == 120
