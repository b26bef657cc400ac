"""The seed's promise, as deployed: a backfill never blocks the daily pipeline.

A real `prefect server start`, the pools and limits of `deployments/setup.py --cap 2`, `prefect deploy --all`
from prefect.yaml, one process worker per pool. A backfill deployment run holds the pipeline's whole cap (2
slots, one partition per chunk, slow partitions); while it runs, the daily deployment is triggered on its own
pool: it must be picked up, run its day and complete while the backfill is still running. The delays are
printed (docs: README "Operate"), not asserted: speed lives in bench/, not in timed asserts.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from prefect_backfill.coordination import target_key
from prefect_backfill.leases import LeaseTable, lease_location
from prefect_backfill.ledger import Ledger
from prefect_backfill.pipeline import TableRef
from prefect_backfill.planning import Status
from tests.e2e.conftest import Server, stop_group
from tests.e2e.crash_harness import NAME, CrashLake, write_bronze
from tests.e2e.test_deployments import BIN, ROOT, cli, run_id_of, wait_final

pytestmark = pytest.mark.e2e

POLL_S = 2  # both workers' PREFECT_WORKER_QUERY_SECONDS


def _worker(server: Server, pool: str, env: dict[str, str], root: Path) -> object:
    import subprocess

    home = root / f"worker-{pool}"
    home.mkdir()
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
        cwd=ROOT,
        env={**server.env, **env, "PREFECT_WORKER_QUERY_SECONDS": str(POLL_S), "PREFECT_HOME": str(home)},
        stdout=(root / f"worker-{pool}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _trigger(server: Server, env: dict[str, str], deployment: str, params: dict[str, object]) -> str:
    out = cli(server, str(BIN / "prefect"), "deployment", "run", deployment, "--params", json.dumps(params), env=env)
    return run_id_of(out.stdout)


def _run(server: Server, run_id: str) -> dict[str, object]:
    return httpx.get(f"{server.api_url}/flow_runs/{run_id}").json()  # type: ignore[no-any-return]


def _at(value: object) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def test_a_daily_run_completes_while_a_backfill_holds_the_whole_cap(prefect_server: Server, tmp_path: Path) -> None:
    lake = CrashLake(tmp_path, days=13, sleep_s=6)
    write_bronze(lake, salt=7, rows_per_day=5)
    env = {
        "BACKFILL_DATA_DIR": str(tmp_path / "data"),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp_path / "results"),
        "BACKFILL_PIPELINE_MODULES": "tests.e2e.crash_pipelines",
        "CRASH_BRONZE": lake.bronze,
        "CRASH_SILVER": lake.silver,
        "CRASH_SLEEP_S": str(lake.sleep_s),
        "PYTHONPATH": str(ROOT),
        "BACKFILL_CHUNK_MIN_SHARE_MB": "0",
    }
    cli(prefect_server, str(BIN / "python"), "-m", "deployments.setup", "--cap", "2", env=env)
    cli(prefect_server, str(BIN / "prefect"), "--no-prompt", "deploy", "--all", env=env)
    workers = [_worker(prefect_server, pool, env, tmp_path) for pool in ("backfill", "daily")]
    try:
        night = _trigger(
            prefect_server,
            env,
            "backfill/demo-orders",
            {
                "pipeline": NAME,
                "start": lake.keys[0],
                "end": lake.keys[11],
                "window_end": None,
                "max_concurrency": 2,
                "chunk_partitions": 1,
            },
        )
        leases = LeaseTable(lease_location(str(lake.ledger_path)))
        deadline = time.monotonic() + 300
        while not any(lease.slots == 2 for lease in leases.live_runs(target_key(TableRef(lake.silver)), NAME).values()):
            assert time.monotonic() < deadline, (tmp_path / "worker-backfill.log").read_text()[-3000:]
            time.sleep(1)
        # The backfill now holds both slots of the cap until it ends (one decision per run).
        daily = _trigger(prefect_server, env, "daily/demo-orders-daily", {"pipeline": NAME, "partition": lake.keys[12]})
        done = wait_final(prefect_server, daily, timeout=300)
        assert done["state_type"] == "COMPLETED", (tmp_path / "worker-daily.log").read_text()[-3000:]
        backfill_then = _run(prefect_server, night)["state_type"]
        assert backfill_then == "RUNNING", f"the backfill was {backfill_then} when the daily run ended: nothing shown"
        current = Ledger(lake.ledger_path).current(NAME)
        assert current[lake.keys[12]].status is Status.COMPLETE and current[lake.keys[12]].run_id == daily
        picked = (_at(done["start_time"]) - _at(done["expected_start_time"])).total_seconds()
        ran = (_at(done["end_time"]) - _at(done["start_time"])).total_seconds()
        print(f"daily run: started {picked:.1f} s after it was due (worker poll {POLL_S} s), ran {ran:.1f} s")
        assert wait_final(prefect_server, night, timeout=400)["state_type"] == "COMPLETED"
    finally:
        for worker in workers:
            stop_group(worker)  # type: ignore[arg-type]
