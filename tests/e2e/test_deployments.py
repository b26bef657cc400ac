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


def assert_deployments_read_back(server: Server) -> None:
    """Every deployment of prefect.yaml, read back from the server, holds what the file says: a key Prefect
    drops without a word (job variables outside ``work_pool:`` were, and runs were Crashed after 90 s) fails here."""
    import yaml

    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for spec in config["deployments"]:
        flow = spec["entrypoint"].rsplit(":", 1)[1]
        name = f"{flow}/{spec['name']}"
        got = httpx.get(f"{server.api_url}/deployments/name/{name}").json()
        assert "job_variables" not in spec, f"{name}: job_variables belong under work_pool: (Prefect ignores them here)"
        pool = spec["work_pool"]
        assert got["work_pool_name"] == pool["name"] and got["work_queue_name"] == pool["work_queue_name"], name
        assert got["job_variables"] == pool.get("job_variables", {}), name
        env = got["job_variables"].get("env", {})
        assert int(env.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", 180)) <= 30, f"{name}: heartbeats slower than 30 s"
        assert {k: got["parameters"].get(k) for k in spec.get("parameters", {})} == spec.get("parameters", {}), name
        assert sorted(got["tags"]) == sorted(spec.get("tags", [])), name
        crons = [(s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"]) for s in got["schedules"]]
        wanted = [(s["cron"], s.get("timezone"), s.get("active", True)) for s in spec.get("schedules") or []]
        assert crons == wanted, name
        limit = spec.get("concurrency_limit")
        if limit:
            assert (got.get("global_concurrency_limit") or {}).get("limit") == limit["limit"], name
            options = got.get("concurrency_options") or {}
            assert options.get("collision_strategy") == limit["collision_strategy"], name
        else:  # none where the file sets none (a paused canary run would be killed at its lease renewal)
            assert not got.get("global_concurrency_limit"), f"{name}: {got.get('global_concurrency_limit')}"
    assert "BACKFILL_TASK_RUNNER" in httpx.get(f"{server.api_url}/deployments/name/backfill/demo-orders-dask").json()[
        "job_variables"
    ].get("env", {}), "demo-orders-dask lost its Dask settings"


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
    # The automations at their defaults, as `make deployments` installs them.
    setup = [str(BIN / "python"), "-m", "deployments.setup", "--cap", "3"]
    first = cli(prefect_server, *setup, env=env)
    # "created" when this test is the first to set up the session's server, "exists" after another one did
    assert re.search(r"pool backfill \((created|exists)\), queue backfill priority 10", first.stdout), first.stdout
    again = cli(prefect_server, *setup, env=env)
    assert "pool backfill (exists)" in again.stdout and "limit backfill-demo-orders = 3" in again.stdout
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    assert_deployments_read_back(prefect_server)

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
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", env=env)
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
        second = trigger(prefect_server, env, params)  # takes over the dead run's partitions (its lease is dead)
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


@pytest.mark.timeout(900)  # a hang bound: it outlives the 90 s zombie window on purpose (380 s on a busy machine)
def test_a_night_long_deployed_run_outlives_the_zombie_window(prefect_server: Server, tmp_path: Path) -> None:
    """The README's set-up exactly (`deployments.setup` at its defaults: no heartbeat for 90 s -> Crashed, then
    `prefect deploy --all`), and a deployed run lasting more than two of those windows: it must be Completed with
    every partition COMPLETE, never Crashed. Before job variables sat under ``work_pool:``, runs got Prefect's
    180 s heartbeat and were Crashed after ~100 s while still working."""
    from tests.e2e.crash_harness import CrashLake, write_bronze
    from tests.e2e.crash_pipelines import NAME

    lake = CrashLake(tmp_path, days=6)
    write_bronze(lake, salt=1, rows_per_day=10)
    env = {
        "BACKFILL_DATA_DIR": str(tmp_path / "data"),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp_path / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo,tests.e2e.crash_pipelines",
        "PYTHONPATH": str(ROOT),
        "CRASH_BRONZE": lake.bronze,
        "CRASH_SILVER": lake.silver,
        "CRASH_SLEEP_S": "31",  # 6 partitions one after the other: ~190 s, more than two 90 s windows
    }
    assert "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" not in {**prefect_server.env, **env}  # only prefect.yaml sets it
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", env=env)
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    params = {
        "pipeline": NAME,
        "start": lake.keys[0],
        "end": lake.keys[-1],
        "window_end": None,
        "max_concurrency": 1,
        "retries": 0,
        "chunk_partitions": 1,
        "reprocess": "all",
    }
    worker = start_worker(prefect_server, env, tmp_path / "worker.log")
    try:
        flow_run_id = trigger(prefect_server, env, params)
        run = wait_final(prefect_server, flow_run_id, timeout=600)
    finally:
        stop_group(worker)
    log = (tmp_path / "worker.log").read_text()[-3000:]
    states = httpx.get(f"{prefect_server.api_url}/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    assert "CRASHED" not in {s["type"] for s in states}, (states, log)
    assert run["state_type"] == "COMPLETED", log
    assert run["total_run_time"] > 180, run["total_run_time"]  # it did outlive two windows
    current = Ledger(lake.ledger_path).current(NAME)
    assert {k: s.status for k, s in current.items()} == dict.fromkeys(lake.keys, Status.COMPLETE)


def _assert_stopped_in_order(ledger: Ledger, silver: str, keys: list[str], done_before: int) -> int:
    """After a stop: no partition RUNNING, at least one more COMPLETE than before, not all, and every
    commit in the table is a COMPLETE partition (none the ledger does not know). The COMPLETE count."""
    from tests.e2e.crash_pipelines import NAME

    stopped = ledger.current(NAME)
    assert Status.RUNNING not in {s.status for s in stopped.values()}, stopped
    done = {k for k, s in stopped.items() if s.status is Status.COMPLETE}
    assert done_before < len(done) < len(keys), stopped
    commits = [c for c in DeltaTable(silver).history() if "predicate" in (c.get("operationParameters") or {})]
    assert len(commits) == len(done)
    return len(done)


def test_a_deployed_run_stops_in_order_when_cancelled_or_marked_crashed(prefect_server: Server, tmp_path: Path) -> None:
    """Two ways Prefect ends a deployed run set up as the README says, and both must stop its work in order
    (no partition RUNNING, no commit the ledger does not know) within the stop bound:

    - `prefect flow-run cancel`: the worker sends SIGTERM to the flow run's process group (the JVM too); the
      run ends Cancelled;
    - the server marks the live run Crashed (what the zombie automation does after 90 s without heartbeats;
      set directly here): "Crashed means stopped", the run notices within a poll and stops.

    Then the next run takes the partitions over and finishes the range."""
    from prefect_backfill.stopping import STOP_GRACE_S
    from tests.e2e.crash_harness import CrashLake, write_bronze
    from tests.e2e.crash_pipelines import NAME

    lake = CrashLake(tmp_path, days=8)
    write_bronze(lake, salt=2, rows_per_day=10)
    env = {
        "BACKFILL_DATA_DIR": str(tmp_path / "data"),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp_path / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo,tests.e2e.crash_pipelines",
        "BACKFILL_STATE_POLL_SECONDS": "2",
        "PYTHONPATH": str(ROOT),
        "CRASH_BRONZE": lake.bronze,
        "CRASH_SILVER": lake.silver,
        "CRASH_SLEEP_S": "3",
    }
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", env=env)
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    params = {
        "pipeline": NAME,
        "start": lake.keys[0],
        "end": lake.keys[-1],
        "window_end": None,
        "max_concurrency": 1,
        "retries": 0,
        "chunk_partitions": 1,
    }
    ledger = Ledger(lake.ledger_path)
    log = tmp_path / "worker.log"

    def one_more_complete(than: int) -> None:
        deadline = time.monotonic() + 300
        while sum(s.status is Status.COMPLETE for s in ledger.current(NAME).values()) <= than:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

    worker = start_worker(prefect_server, env, log)
    try:
        cancelled = trigger(prefect_server, env, params)
        one_more_complete(0)
        asked = time.monotonic()
        cli(prefect_server, str(BIN / "prefect"), "flow-run", "cancel", cancelled, env=env)
        run = wait_final(prefect_server, cancelled, timeout=120)
        took = time.monotonic() - asked
        assert run["state_type"] == "CANCELLED", log.read_text()[-4000:]
        assert took < STOP_GRACE_S + 15, f"{took:.0f} s from cancel to Cancelled\n{log.read_text()[-4000:]}"
        done = _assert_stopped_in_order(ledger, lake.silver, lake.keys, 0)

        crashed = trigger(prefect_server, env, params)
        one_more_complete(done)
        marked = httpx.post(
            f"{prefect_server.api_url}/flow_runs/{crashed}/set_state",
            json={"state": {"type": "CRASHED", "name": "Crashed", "message": "no heartbeat (test)"}, "force": True},
        )
        assert marked.status_code in (200, 201), marked.text
        asked = time.monotonic()
        while "the flow run was marked Crashed on the Prefect server: stopping" not in log.read_text():
            assert time.monotonic() - asked < 30, log.read_text()[-3000:]
            time.sleep(0.5)
        while any(s.status is Status.RUNNING for s in ledger.current(NAME).values()):
            assert time.monotonic() - asked < 2 + STOP_GRACE_S + 15, ledger.current(NAME)
            time.sleep(0.5)
        time.sleep(3)  # nothing more is written after the stop
        _assert_stopped_in_order(ledger, lake.silver, lake.keys, done)

        last = trigger(prefect_server, env, params)
        again = wait_final(prefect_server, last, timeout=420)
        assert again["state_type"] == "COMPLETED", log.read_text()[-3000:]
        assert "held by another live run" not in log.read_text()  # the stopped runs' leases ended
    finally:
        stop_group(worker)
    current = ledger.current(NAME)
    assert {k: s.status for k, s in current.items()} == dict.fromkeys(lake.keys, Status.COMPLETE)
