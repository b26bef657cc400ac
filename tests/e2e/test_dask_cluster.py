"""Scale-out on Dask, as a user runs it: a real `dask scheduler` and two `dask worker` processes on
loopback, a real Prefect server, and `backfill run` with BACKFILL_TASK_RUNNER=dask. Each Dask worker
process starts its own Spark session (a local JVM) on its first partition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.e2e.conftest import Server, free_port, stop_group

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]


def wait_for_workers(address: str, count: int, procs: list[subprocess.Popen[bytes]], timeout: float = 120) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    with Client(address, timeout=30) as client:
        while len(client.scheduler_info()["workers"]) < count:
            for proc in procs:
                assert proc.poll() is None, f"a Dask process exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"fewer than {count} Dask workers after {timeout} s"
            time.sleep(0.5)


@pytest.fixture
def dask_cluster(
    prefect_server: Server, tmp_path: Path
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]], dict[str, str]]]:
    """Scheduler + 2 workers. The workers' environment is what a cluster operator would set: the
    Prefect API, the pipeline modules, the shared data/result folders and the Spark settings."""
    data = tmp_path / "data"
    env = {
        **prefect_server.env,
        "BACKFILL_DATA_DIR": str(data),
        "BACKFILL_RESULT_STORAGE_PATH": str(data / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo",
        "BACKFILL_CACHE_DIR": str(ROOT / ".cache"),
        "BACKFILL_SPARK_DRIVER_MEMORY": "1g",
        "JAVA_HOME": os.environ.get("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64"),
        "PYTHONPATH": str(ROOT),
    }
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path / "dask"
    logs.mkdir()
    procs = [
        subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            cwd=ROOT,
            env=env,
            stdout=(logs / "scheduler.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ]
    try:
        for i in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "dask"),
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "2",
                        "--no-dashboard",
                        "--name",
                        f"backfill-worker-{i}",
                        "--local-directory",
                        str(logs / f"w{i}"),
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=(logs / f"worker{i}.log").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        wait_for_workers(address, 2, procs)
        yield address, procs, env
    finally:
        for proc in reversed(procs):
            stop_group(proc)


def test_backfill_on_a_dask_cluster(
    prefect_server: Server, dask_cluster: tuple[str, list[subprocess.Popen[bytes]], dict[str, str]]
) -> None:
    address, procs, env = dask_cluster
    data = Path(env["BACKFILL_DATA_DIR"])
    bronze = data / "lake" / "bronze" / "orders"
    subprocess.run(
        [
            str(BIN / "python"),
            "-c",
            f"from prefect_backfill.demo import generate_orders; generate_orders({str(bronze)!r}, "
            f"'{DAYS[0]}', '{DAYS[-1]}', rows_per_day=30)",
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The server as `make deployments` leaves it (the zombie automation at its 90 s default): this run lasts
    # longer than that window, and `backfill run` must beat often enough not to be taken for a dead one.
    subprocess.run(
        [str(BIN / "python"), "-m", "deployments.setup"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    run_env = {**env, "BACKFILL_TASK_RUNNER": "dask", "BACKFILL_DASK_ADDRESS": address}
    done = subprocess.run(
        [str(BIN / "backfill"), "run", "demo_orders", "--start", DAYS[0], "--end", DAYS[-1], "--max-concurrency", "2"],
        cwd=ROOT,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 completed" in done.stdout

    files = pa.table(DeltaTable(str(data / "lake" / "silver" / "orders")).get_add_actions()).to_pylist()
    assert {str(f["partition"]["order_date"]) for f in files} == set(DAYS)
    assert sum(f["num_records"] for f in files) == 4 * 30
    current = Ledger(data / "lake" / "silver" / "_backfill_progress").current("demo_orders")
    assert sorted(current) == DAYS and {s.status for s in current.values()} == {Status.COMPLETE}

    # The partitions ran in the Dask workers: Spark JVMs were started under them, not under the CLI.
    jvms = [
        child
        for worker in procs[1:]
        for child in psutil.Process(worker.pid).children(recursive=True)
        if "java" in child.name()
    ]
    assert jvms, "no Spark JVM under the Dask workers"
    # ...and reported to the Prefect server: one completed task run per chunk, covering every day.
    (run_id,) = {s.run_id for s in current.values()}  # the flow run's id: other tests share this server
    states = httpx.get(f"{prefect_server.api_url}/flow_run_states/", params={"flow_run_id": run_id}).json()
    assert "CRASHED" not in {s["type"] for s in states}, states
    runs = httpx.post(
        f"{prefect_server.api_url}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [run_id]}}, "task_runs": {"name": {"like_": "partitions-2024-01-0"}}},
    ).json()
    spans = [r["name"].removeprefix("partitions-") for r in runs if r["state_type"] == "COMPLETED"]
    covered = {day for span in spans for day in DAYS if span.split("..")[0] <= day <= span.split("..")[-1]}
    assert covered == set(DAYS) and len(spans) == 2  # two chunks of two days, one per slot
