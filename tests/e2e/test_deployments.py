"""Deployments as users run them: a real `prefect server start`, the set-up script, `prefect deploy`
from prefect.yaml, a real process worker, `prefect deployment run … --params`."""

from __future__ import annotations

import contextlib
import json
import re
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


def run_id_of(output: str) -> str:
    """The flow run id that `prefect deployment run` prints ("UUID: …", inside Rich decorations)."""
    found = re.search(r"UUID:\s*([0-9a-f]{8}-[0-9a-f-]{27})", output)
    assert found, output
    return found.group(1)


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
    # No zombie automation here: on a loaded 2-core machine a heartbeat can be late; the kill test covers it.
    setup = [str(BIN / "python"), "-m", "deployments.setup", "--cap", "3", "--zombie-after", "0"]
    first = cli(prefect_server, *setup, env=env)
    # "created" when this test is the first to set up the session's server, "exists" after another one did
    assert re.search(r"pool backfill \((created|exists)\), queue backfill priority 10", first.stdout), first.stdout
    again = cli(prefect_server, *setup, env=env)
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
        flow_run_id = run_id_of(triggered.stdout)
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


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and everything under it (flow run process, JVM): a machine going away."""
    import psutil

    parent = psutil.Process(proc.pid)
    for child in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    proc.wait(timeout=30)


def start_worker(server: Server, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "backfill", "--type", "process"],
        cwd=ROOT,
        env={**server.env, **env, "PREFECT_WORKER_QUERY_SECONDS": "1"},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def trigger(server: Server, env: dict[str, str], params: dict[str, Any]) -> str:
    out = cli(
        server,
        str(BIN / "prefect"),
        "deployment",
        "run",
        "backfill/demo-orders",
        "--params",
        json.dumps(params),
        env=env,
    )
    return run_id_of(out.stdout)


def test_a_killed_worker_loses_nothing_and_the_rerun_finishes_identically(
    prefect_server: Server, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    from prefect_backfill.demo import generate_orders, to_silver_orders
    from prefect_backfill.engine.spark import get_spark

    data = tmp_path / "data"
    bronze = str(data / "lake" / "bronze" / "orders")
    generate_orders(bronze, "2024-02-01", "2024-02-08", rows_per_day=30)
    env = {
        "BACKFILL_DATA_DIR": str(data),
        "BACKFILL_RESULT_STORAGE_PATH": str(data / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo",
    }
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", "--zombie-after", "240", env=env)
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    ledger = Ledger(data / "lake" / "silver" / "_backfill_progress")
    # Chunks of two days, so that the kill lands between commits of one run.
    params = {
        "start": "2024-02-01",
        "end": "2024-02-08",
        "window_end": None,
        "max_concurrency": 1,
        "retries": 0,
        "chunk_partitions": 2,
    }

    worker = start_worker(prefect_server, env, tmp_path / "worker1.log")
    try:
        first = trigger(prefect_server, env, params)
        deadline = time.monotonic() + 300
        while sum(s.status is Status.COMPLETE for s in ledger.current("demo_orders").values()) < 2:
            assert time.monotonic() < deadline, (tmp_path / "worker1.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        kill_tree(worker)
    killed_at = ledger.current("demo_orders")
    assert any(s.status is not Status.COMPLETE for s in killed_at.values())  # it really died mid-run

    worker = start_worker(prefect_server, env, tmp_path / "worker2.log")
    try:
        second = trigger(prefect_server, env, params)  # waits for the dead run's slot (ENQUEUE)
        assert wait_final(prefect_server, first, timeout=600)["state_type"] == "CRASHED"
        run = wait_final(prefect_server, second, timeout=420)
        assert run["state_type"] == "COMPLETED", (tmp_path / "worker2.log").read_text()[-3000:]
    finally:
        stop_group(worker)

    current = ledger.current("demo_orders")
    assert len(current) == 8 and {s.status for s in current.values()} == {Status.COMPLETE}
    spark = get_spark()
    target = spark.read.format("delta").load(str(data / "lake" / "silver" / "orders"))
    expected = to_silver_orders(spark.read.format("delta").load(bronze))
    assert target.count() == expected.count() == 8 * 30
    assert target.select(F.countDistinct("order_id")).first()[0] == 240  # no row lost or duplicated
    assert target.exceptAll(expected).count() == 0 and expected.exceptAll(target).count() == 0
