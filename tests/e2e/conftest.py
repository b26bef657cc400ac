"""Real servers on free loopback ports, their state in temporary folders, each stopped (with its whole
process group) even when a test fails: `prefect server start`; a Spark standalone master with one
worker; a Spark Connect server with Delta's jars. The Spark ones run from pyspark's own launchers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from prefect_backfill.engine.spark import spark_home

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
JDK17 = "/usr/lib/jvm/java-17-openjdk-amd64"  # Spark 4.2 needs 17 or 21; never whatever `java` is first
JVM_START_TIMEOUT = 240.0  # a JVM start takes tens of seconds on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the process group (Prefect can ignore a lone SIGINT)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue


@dataclass(frozen=True)
class Server:
    url: str  # the UI
    api_url: str

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients of this server: this process's as it is now (so a process a test starts
        carries that test's PYTEST_CURRENT_TEST, which bench/suite_cpu.py charges its CPU to), and the API."""
        return {**os.environ, "PREFECT_API_URL": self.api_url}


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The UI asks the API at this address (default: port 4200, which is not ours).
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        # Slots must not leak across a server restart (see docs): keep leases on disk.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prefect server did not answer /api/health within 180 s")
            time.sleep(0.5)
        yield Server(url, f"{url}/api")
    finally:
        stop_group(proc)
        log.close()


# -- Spark ---------------------------------------------------------------------------------------


def spark_env(root: Path) -> dict[str, str]:
    """Environment of a Spark daemon or driver: pyspark's folder as SPARK_HOME, JDK 17, every log and
    scratch folder under ``root``, loopback only."""
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "JAVA_HOME": JDK17 if os.path.isdir(JDK17) else os.environ.get("JAVA_HOME", ""),
        "SPARK_LOG_DIR": str(root / "logs"),
        "SPARK_PID_DIR": str(root / "pids"),
        "SPARK_WORKER_DIR": str(root / "work"),
        "SPARK_LOCAL_DIRS": str(root / "scratch"),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    for key in ("SPARK_CONF_DIR", "SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "PYSPARK_SUBMIT_ARGS"):
        env.pop(key, None)
    return env


def wait_until(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Poll ``check`` until it holds; fail early (with the log's tail) if ``proc`` dies first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the process exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def start_logged(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    """Start ``command`` in its own process group (``stop_group`` stops it and its children)."""
    out = log.open("ab")
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, out


def accepts_connections(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


@dataclass(frozen=True)
class SparkCluster:
    master_url: str  # spark://127.0.0.1:P
    ui_url: str  # the master's web UI: /json/ describes workers and applications
    work_dir: Path  # the worker's work dir: one folder per application that ran executors here
    root: Path

    def state(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(f"{self.ui_url}/json/", timeout=5).json()
        return answer


@pytest.fixture
def spark_cluster(tmp_path: Path) -> Iterator[SparkCluster]:
    """A Spark standalone master and one worker (2 cores, 2 GB) on loopback, from pyspark's own
    ``bin/spark-class``; ready when the master lists the worker ALIVE."""
    root = tmp_path / "spark-cluster"
    for sub in ("logs", "work", "scratch"):
        (root / sub).mkdir(parents=True)
    env = spark_env(root)
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, ui_port, worker_ui_port = free_port(), free_port(), free_port()
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", root / "work", root)
    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    try:
        master_cmd = [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        master_cmd += ["--port", str(port), "--webui-port", str(ui_port)]
        started.append(start_logged(master_cmd, env, root, root / "master.log"))
        wait_until(
            lambda: "workers" in cluster.state(),
            "spark master UI",
            started[0][0],
            root / "master.log",
            JVM_START_TIMEOUT,
        )
        worker_cmd = [spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url, "--host", "127.0.0.1"]
        worker_cmd += ["--cores", "2", "--memory", "2g", "--webui-port", str(worker_ui_port)]
        worker_cmd += ["--work-dir", str(cluster.work_dir)]
        started.append(start_logged(worker_cmd, env, root, root / "worker.log"))
        wait_until(
            lambda: [w["state"] for w in cluster.state()["workers"]] == ["ALIVE"],
            "spark worker registered ALIVE",
            started[1][0],
            root / "worker.log",
            JVM_START_TIMEOUT,
        )
        yield cluster
    finally:
        for proc, out in reversed(started):
            stop_group(proc)
            out.close()


@dataclass(frozen=True)
class ConnectServer:
    url: str  # sc://127.0.0.1:PORT
    log: Path


@pytest.fixture
def spark_connect_server(tmp_path: Path) -> Iterator[ConnectServer]:
    """A Spark Connect server with Delta's jars, started as users start it (``backfill spark-connect``:
    the jars come from the project's Ivy cache), local master, bound to loopback; ready when its port
    accepts connections."""
    root = tmp_path / "spark-connect"
    for sub in ("logs", "scratch"):
        (root / sub).mkdir(parents=True)
    port = free_port()
    env = {**spark_env(root), "BACKFILL_CACHE_DIR": str(ROOT / ".cache"), "BACKFILL_SPARK_MASTER": "local[*]"}
    env.pop("BACKFILL_SPARK_CONF", None)
    log = root / "server.log"
    command = [str(VENV_BIN / "backfill"), "spark-connect", "--port", str(port), "--host", "127.0.0.1"]
    proc, out = start_logged(command, env, root, log)
    try:
        wait_until(lambda: accepts_connections(port), "spark connect server port", proc, log, JVM_START_TIMEOUT)
        yield ConnectServer(f"sc://127.0.0.1:{port}", log)
    finally:
        stop_group(proc)
        out.close()
