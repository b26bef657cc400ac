"""Spark by settings, against real parts: the real `backfill run` CLI (embedded Prefect server) driving a
Spark standalone cluster (BACKFILL_SPARK_MASTER=spark://…) and a Spark Connect server
(BACKFILL_SPARK_REMOTE=sc://…), then the table checked with delta-rs (no JVM) and the ledger read back."""

from __future__ import annotations

import os
import re
import subprocess
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, QueryBuilder

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.e2e.conftest import JDK17, ROOT, VENV_BIN, ConnectServer, SparkCluster, stop_group

pytestmark = pytest.mark.e2e

START, END, ROWS_PER_DAY = "2024-01-01", "2024-01-03", 30
DAYS = ["2024-01-01", "2024-01-02", "2024-01-03"]
GENERATE = (
    "from prefect_backfill.demo import generate_orders, bronze_path; "
    f"print(generate_orders(bronze_path(), {START!r}, {END!r}, rows_per_day={ROWS_PER_DAY}))"
)


def backfill_env(data: Path, **spark: str) -> dict[str, str]:
    """The CLI's environment: its own data dir, result storage and Prefect home (embedded server); the
    project's jar cache; Spark only as ``spark`` says."""
    env = {
        **os.environ,
        "JAVA_HOME": JDK17 if os.path.isdir(JDK17) else os.environ.get("JAVA_HOME", ""),
        "BACKFILL_DATA_DIR": str(data),
        "BACKFILL_CACHE_DIR": str(ROOT / ".cache"),  # the Delta jars (it also holds results by default:)
        "BACKFILL_RESULT_STORAGE_PATH": str(data / "results"),
        "BACKFILL_PIPELINE_MODULES": "prefect_backfill.demo",
        "PREFECT_HOME": str(data / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "SPARK_LOCAL_IP": "127.0.0.1",  # the driver too: executors reach it on loopback
    }
    for key in (
        "PREFECT_API_URL",
        "BACKFILL_SPARK_MASTER",
        "BACKFILL_SPARK_REMOTE",
        "BACKFILL_SPARK_CONF",
        "BACKFILL_ENGINE",
        "BACKFILL_TASK_RUNNER",
        "SPARK_REMOTE",
        "SPARK_CONNECT_MODE_ENABLED",
    ):
        env.pop(key, None)
    return {**env, **spark}


def run(args: list[str], env: dict[str, str], log: Path, timeout: float = 420) -> tuple[int, str, float]:
    """Run a command in its own process group (stopped whatever happens); exit code, output, seconds."""
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            stop_group(proc)
    return proc.returncode, log.read_text(errors="replace"), time.monotonic() - started


def generate_bronze(env: dict[str, str], log: Path) -> None:
    code, output, _ = run([str(VENV_BIN / "python"), "-c", GENERATE], env, log, timeout=300)
    assert code == 0 and output.strip().endswith(str(3 * ROWS_PER_DAY)), output[-3000:]


def backfill(env: dict[str, str], log: Path) -> float:
    cmd = [str(VENV_BIN / "backfill"), "run", "demo_orders", "--start", START, "--end", END]
    code, output, seconds = run(cmd, env, log)
    assert code == 0, output[-4000:]
    assert "3 completed, 0 cached, 0 skipped, 0 failed of 3" in output, output[-4000:]
    return seconds


def spark_round(value: float) -> float:
    """Spark's round() on a double: the shortest decimal form, rounded half up (Python's round() is
    half-even on the binary value: 73.85 * 1.1 = 81.235 gives 81.23 there and 81.24 in Spark)."""
    return float(Decimal(repr(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def assert_backfilled(data: Path) -> None:
    """Exactly the 90 transformed rows in the target (read with delta-rs: no JVM), COMPLETE x 3 in the ledger."""
    silver = data / "lake" / "silver"
    target = DeltaTable(str(silver / "orders"))
    assert target.metadata().partition_columns == ["order_date"]
    rows = pa.table(QueryBuilder().register("t", target).execute("SELECT * FROM t").read_all()).to_pylist()
    assert len(rows) == 3 * ROWS_PER_DAY
    assert len({r["order_id"] for r in rows}) == 3 * ROWS_PER_DAY
    assert sorted({r["order_date"].isoformat() for r in rows}) == DAYS
    wrong = [r for r in rows if r["amount_usd"] != spark_round(r["amount"] * 1.1)]
    assert not wrong, wrong[:5]
    current = Ledger(silver / "_backfill_progress").current("demo_orders")
    assert sorted(current) == DAYS
    assert {s.status for s in current.values()} == {Status.COMPLETE}
    assert sum(s.rows_out or 0 for s in current.values()) == 3 * ROWS_PER_DAY


@pytest.mark.timeout(600)
def test_backfill_on_a_spark_standalone_cluster(spark_cluster: SparkCluster, tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_bronze(backfill_env(data, BACKFILL_SPARK_MASTER="local[2]"), tmp_path / "generate.log")
    assert not spark_cluster.state()["completedapps"]  # the bronze was written locally, not on the cluster

    seconds = backfill(backfill_env(data, BACKFILL_SPARK_MASTER=spark_cluster.master_url), tmp_path / "backfill.log")

    assert_backfilled(data)
    # The work ran on the cluster: the master saw the application finish, and the worker ran its
    # executor, whose log shows it ran tasks.
    state = spark_cluster.state()
    assert [(a["name"], a["state"]) for a in state["completedapps"]] == [("prefect-backfill", "FINISHED")]
    app_id = state["completedapps"][0]["id"]
    executor_logs = list((spark_cluster.work_dir / app_id).glob("*/stderr"))
    assert executor_logs, sorted(p.name for p in spark_cluster.work_dir.iterdir())
    assert any("Finished task" in log.read_text(errors="replace") for log in executor_logs)
    print(f"backfill CLI on the standalone cluster: {seconds:.1f} s")


@pytest.mark.timeout(600)
def test_backfill_through_spark_connect(spark_connect_server: ConnectServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = backfill_env(data, BACKFILL_SPARK_REMOTE=spark_connect_server.url)
    generate_bronze(env, tmp_path / "generate.log")  # through the server too: no local JVM at all

    seconds = backfill(env, tmp_path / "backfill.log")

    assert_backfilled(data)
    # The server made the commits: the target's creation and one replaceWhere overwrite per chunk (three
    # days over two slots: chunks of two days and one).
    committed = re.compile(
        rf"Committed delta #(\d+) to file:{re.escape(str(data / 'lake' / 'silver' / 'orders'))}/_delta_log$"
    )
    versions = sorted(
        int(m[1]) for line in spark_connect_server.log.read_text().splitlines() if (m := committed.search(line))
    )
    assert versions == [0, 1, 2], versions
    print(f"backfill CLI through Spark Connect: {seconds:.1f} s")
