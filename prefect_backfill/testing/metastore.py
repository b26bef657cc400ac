"""A real Hive metastore on 127.0.0.1 for the tests and `make metastore`: Spark's own.

The metastore is Hive's standalone Thrift service (``org.apache.hadoop.hive.metastore.HiveMetaStore``, Hive
2.3) on an embedded Derby database in a folder, run from the jars pyspark already ships (hive-metastore,
DataNucleus, Derby): nothing to download or build, and the same service a Spark cluster with
``hive.metastore.uris`` talks to (AWS Glue and Databricks' legacy metastore speak the same API). It starts in
about 5 s here. Its log4j set-up is Hive's own except for the context selector: Hive asks for the
asynchronous one, whose LMAX disruptor pyspark does not ship.

Nothing here is used by a backfill itself: a user points the package at their own metastore with
``BACKFILL_METASTORE_URI=thrift://host:9083``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

__all__ = ["METASTORE_CLASS", "Metastore", "running_metastore", "spark_sql", "start_metastore"]

METASTORE_CLASS = "org.apache.hadoop.hive.metastore.HiveMetaStore"


@dataclass(frozen=True)
class Metastore:
    """A running metastore: its Thrift address, its folder (Derby database, warehouse) and the settings a
    backfill needs to use it."""

    uri: str
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def warehouse(self) -> Path:
        """Where managed tables of databases created without a location go."""
        return self.root / "warehouse"

    @property
    def env(self) -> Mapping[str, str]:
        """The environment of a process that uses this metastore: the package's one setting for it."""
        return {"BACKFILL_METASTORE_URI": self.uri}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _site(root: Path) -> str:
    properties = {
        "javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={root / 'metastore_db'};create=true",
        "datanucleus.schema.autoCreateAll": "true",
        "hive.metastore.schema.verification": "false",
        "hive.metastore.warehouse.dir": str(root / "warehouse"),
    }
    body = "".join(f"<property><name>{k}</name><value>{escape(v)}</value></property>" for k, v in properties.items())
    return f"<configuration>{body}</configuration>\n"


def start_metastore(root: Path, port: int | None = None, log: Path | None = None) -> Metastore:
    """Start the metastore with its Derby database and warehouse under ``root``, on 127.0.0.1 (a free port
    unless ``port``), and wait until it answers."""
    from prefect_backfill.engine.runtime import java_home, spark_home

    root = root.resolve()
    (root / "conf").mkdir(parents=True, exist_ok=True)
    (root / "warehouse").mkdir(exist_ok=True)
    (root / "conf" / "hive-site.xml").write_text(_site(root))
    port = port or _free_port()
    java = Path(java_home() or os.environ.get("JAVA_HOME", "/usr")) / "bin" / "java"
    classpath = f"{root / 'conf'}{os.pathsep}{spark_home() / 'jars' / '*'}"
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
    process = subprocess.Popen(
        [
            str(java),
            "-Xmx512m",
            "-Dlog4j2.contextSelector=org.apache.logging.log4j.core.selector.ClassLoaderContextSelector",
            # Hive binds every interface unless told: loopback only.
            "-Dhive.metastore.thrift.bind.host=127.0.0.1",
            "-cp",
            classpath,
            METASTORE_CLASS,
            "-p",
            str(port),
        ],
        cwd=root,  # Derby's derby.log
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C of the test run is not its business: the fixture stops it
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Hive metastore exited with {process.returncode} (see {log})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return Metastore(f"thrift://127.0.0.1:{port}", root, process)
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the Hive metastore did not listen on 127.0.0.1:{port} within 120 s")


def spark_sql(uri: str, statements: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Run ``statements`` in a Spark session of the package's configuration on the metastore at ``uri``, in
    a child process (a test process keeps no JVM, and a session's catalog is fixed when it starts)."""
    script = (
        "import sys\n"
        "from prefect_backfill.engine.spark import get_spark\n"
        "spark = get_spark()\n"
        "for statement in sys.argv[1:]:\n"
        "    spark.sql(statement)\n"
    )
    child_env = {**(env if env is not None else os.environ), "BACKFILL_METASTORE_URI": uri}
    done = subprocess.run(
        [sys.executable, "-c", script, *statements], env=child_env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"Spark SQL on {uri} failed ({done.returncode}): {done.stderr[-3000:]}")


@contextmanager
def running_metastore(root: Path, log: Path | None = None) -> Iterator[Metastore]:
    store = start_metastore(root, log=log)
    try:
        yield store
    finally:
        store.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    """``make metastore``: serve a metastore kept in ``--root`` on 127.0.0.1:``--port`` in the foreground
    (Ctrl-C stops it) and print the setting to export in the shell that runs the backfill."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="python -m prefect_backfill.testing.metastore")
    parser.add_argument("--port", type=int, default=9083)
    parser.add_argument("--root", type=Path, default=Path(".data/metastore"))
    args = parser.parse_args(argv)
    store = start_metastore(args.root, port=args.port)
    print(f"a Hive metastore on {store.uri} (its database and warehouse in {store.root}); in the backfill's shell:")
    for key, value in store.env.items():
        print(f"  export {key}={value}")

    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        store.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        store.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
