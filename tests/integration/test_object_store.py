"""The ``backfill`` CLI on an object store, as a user runs it: a real S3-compatible server (versitygw), the
CLI as a process with its embedded Prefect server and Spark, source, target, ledger and leases all on
``s3a://``. What is checked is what the store and the ledger hold afterwards, read back with delta-rs.

- kill -9 of the CLI's whole process group mid-write, then the plain command again: every partition
  COMPLETE in the ledger, the target equal to the transform of the source, one commit per partition;
  ``backfill status`` then answers with no Java at all;
- faults: wrong credentials, a missing bucket, the store gone mid-run: one line saying what is wrong, no
  secret anywhere in the output, a non-zero exit; once the store is back the same command completes;
- a throttling, slow store that also loses the answer to one commit it carried out (a fault proxy in
  front of the real server): retried with backoff, every partition written once; wrong credentials
  are not retried.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from prefect_backfill.storage import delta_options, read_text
from prefect_backfill.testing.fault_proxy import FaultRules, faulty_proxy
from prefect_backfill.testing.object_store import ObjectStore, build_server, start_store

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
BACKFILL = str(Path(sys.executable).parent / "backfill")
KEYS = [f"2024-01-0{d}" for d in range(1, 9)]
ROWS_PER_DAY = 40
#: Two days a chunk, one chunk at a time: four commits, each long enough to be killed in.
RUN = ["run", "s3_orders", "--start", KEYS[0], "--end", KEYS[-1], "--chunk-partitions", "2", "--max-concurrency", "1"]


@dataclass
class Store:
    """A store of this module's own (it is stopped and started again), and the CLI's environment."""

    root: Path
    port: int
    server: ObjectStore
    env: dict[str, str]
    tmp: Path

    def restart(self) -> None:
        self.server.stop()
        self.server = start_store(build_server(ROOT / ".cache"), self.root, port=self.port)

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> tuple[int, str]:
        proc = subprocess.run(
            [BACKFILL, *args], env=env or self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        return proc.returncode, proc.stdout + proc.stderr

    def start(self, *args: str, log: str) -> tuple[subprocess.Popen[bytes], Path]:
        path = self.tmp / log
        with path.open("wb") as out:
            proc = subprocess.Popen(
                [BACKFILL, *args], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return proc, path

    @contextlib.contextmanager
    def settings(self) -> Iterator[None]:
        """This store's settings in this process for a moment (the session's store is everyone else's)."""
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("BACKFILL_S3", "AWS_"))})
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def ledger(self, name: str) -> dict[str, Status]:
        with self.settings():
            ledger = Ledger(f"s3a://lake/{name}/_backfill_progress")
            return {k: s.status for k, s in ledger.current(name).items()}

    def rows_by_day(self, name: str) -> dict[str, int]:
        """Rows per day of the target, from its log (delta-rs, as a reader of the lake would)."""
        location = f"s3a://lake/{name}/orders"
        with self.settings():
            actions = DeltaTable(location, storage_options=delta_options(location)).get_add_actions(flatten=True)
        out: dict[str, int] = {}
        for day, count in zip(
            actions.column("partition.order_date").to_pylist(), actions.column("num_records").to_pylist(), strict=True
        ):
            out[str(day)] = out.get(str(day), 0) + int(count)
        return out

    def amounts(self, name: str) -> pa.Table:
        location = f"s3a://lake/{name}/orders"
        with self.settings():
            table = DeltaTable(location, storage_options=delta_options(location))
            return table.to_pyarrow_table(columns=["amount", "amount_usd"])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A second server (this module stops it on purpose), the bronze table copied onto it, and a pipeline
    module writing ``s3a://lake/<name>/orders`` with its ledger beside it."""
    tmp = tmp_path_factory.mktemp("s3cli")
    server = start_store(build_server(ROOT / ".cache"), tmp / "store", log=tmp / "versitygw.log")
    server.bucket("lake")
    modules = tmp / "modules"
    modules.mkdir()
    (modules / "s3_pipelines.py").write_text(
        textwrap.dedent(
            """
            import time

            from pyspark.sql import functions as F

            from prefect_backfill import Pipeline, register
            from prefect_backfill.demo import to_silver_orders


            def slow(orders):
                def crawl(value):
                    time.sleep(0.03)  # in Spark's Python workers: a chunk takes a few seconds
                    return value

                return to_silver_orders(orders).withColumn("amount", F.udf(crawl, "double")(F.col("amount")))


            for name, target in [
                ("s3_orders", "s3a://lake/s3_orders/orders"),
                ("gone_orders", "s3a://lake/gone_orders/orders"),
                ("nobucket_orders", "s3a://nobucket/x/orders"),
                ("throttled_orders", "s3a://lake/throttled_orders/orders"),
            ]:
                register(Pipeline(name, "s3a://lake/bronze", target, "order_date", slow, "1"))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "BACKFILL_", "AWS_"))}
    env |= {
        **server.env,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{modules}",
        "BACKFILL_PIPELINE_MODULES": "s3_pipelines",
        "BACKFILL_CACHE_DIR": str(ROOT / ".cache"),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp / "results"),
        "BACKFILL_S3_RETRY_SECONDS": "5",
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    bronze = subprocess.run(
        [
            sys.executable,
            "-c",
            "from prefect_backfill.demo import generate_orders; "
            f"print(generate_orders('s3a://lake/bronze', '{KEYS[0]}', '{KEYS[-1]}', rows_per_day={ROWS_PER_DAY}))",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bronze.returncode == 0, bronze.stderr
    port = int(server.endpoint.rsplit(":", 1)[1])
    handle = Store(tmp / "store", port, server, env, tmp)
    yield handle
    handle.server.stop()


def _until(what: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.3)


EVERY_DAY_ONCE = dict.fromkeys(KEYS, ROWS_PER_DAY)


def test_kill_9_of_the_cli_mid_write_then_the_plain_command_completes_and_status_needs_no_java(store: Store) -> None:
    proc, log = store.start(*RUN, log="killed.log")
    # A different moment each run (printed, to replay one): anywhere from the first commit's end into the
    # next chunks' jobs and commits.
    delay = random.Random().uniform(0.0, 3.0)
    print(f"kill -9 {delay:.2f} s after the first partition completed")
    try:
        _until(lambda: Status.COMPLETE in store.ledger("s3_orders").values(), proc, log)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed_at = store.ledger("s3_orders")
    assert set(killed_at.values()) != {Status.COMPLETE} or len(killed_at) < len(KEYS), (delay, killed_at)

    code, out = store.cli(*RUN)
    assert code == 0, out
    assert store.ledger("s3_orders") == dict.fromkeys(KEYS, Status.COMPLETE)
    assert store.rows_by_day("s3_orders") == EVERY_DAY_ONCE  # nothing lost, nothing twice
    amounts = store.amounts("s3_orders")
    off = pc.abs(pc.subtract(amounts.column("amount_usd"), pc.multiply(amounts.column("amount"), 1.1)))
    assert pc.max(off).as_py() <= 0.005 + 1e-9  # the fixed transform (amount x 1.1, to the cent), read back

    # `backfill status` on the store: no Spark, no Java (a JAVA_HOME that does not exist would fail any JVM).
    code, out = store.cli("status", "s3_orders", "--json", env={**store.env, "JAVA_HOME": "/nonexistent"})
    assert code == 0, out
    assert json.loads(out)["counts"]["COMPLETE"] == len(KEYS)
    assert store.env["AWS_SECRET_ACCESS_KEY"] not in out


@pytest.mark.parametrize(
    ("pipeline", "env", "words"),
    [
        ("s3_orders", {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "refused access to bucket 'lake' (HTTP 403)"),
        ("nobucket_orders", {}, "bucket 'nobucket' does not exist"),
        ("s3_orders", {"BACKFILL_S3_ENDPOINT": "http://127.0.0.1:9"}, "does not answer"),
    ],
    ids=["wrong-credentials", "missing-bucket", "wrong-endpoint"],
)
@pytest.mark.parametrize("command", ["status", "run"])
def test_a_store_fault_is_one_line_saying_what_to_fix(
    store: Store, pipeline: str, env: dict[str, str], words: str, command: str
) -> None:
    args = [command, pipeline] if command == "status" else [command, pipeline, "--start", KEYS[0], "--end", KEYS[0]]
    code, out = store.cli(*args, env={**store.env, **env}, timeout=180)
    assert code != 0, out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], out
    assert "Traceback" not in out
    for secret in (store.env["AWS_SECRET_ACCESS_KEY"], "not-the-secret"):
        assert secret not in out


def test_the_store_gone_mid_run_fails_the_run_and_the_same_command_completes_once_it_is_back(store: Store) -> None:
    args = ["run", "gone_orders", "--start", KEYS[0], "--end", KEYS[3], "--chunk-partitions", "1", "--retries", "0"]
    proc, log = store.start(*args, log="gone.log")
    try:
        _until(lambda: Status.COMPLETE in store.ledger("gone_orders").values(), proc, log)
        store.server.stop()
        stopped = time.monotonic()
        code = proc.wait(240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        if store.server.process.poll() is not None:
            store.restart()
    out = log.read_text()
    assert code == 1, out
    took = time.monotonic() - stopped
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert errors and "does not answer" in errors[-1], out
    assert took < 180, f"{took:.0f} s to give up on a store that went away\n{out}"

    code, out = store.cli(*args)
    assert code == 0, out
    assert store.ledger("gone_orders") == dict.fromkeys(KEYS[:4], Status.COMPLETE)
    assert store.rows_by_day("gone_orders") == dict.fromkeys(KEYS[:4], ROWS_PER_DAY)


def test_two_clis_on_disjoint_ranges_of_one_table_on_the_store_lose_no_commit(store: Store) -> None:
    """Two `backfill run` processes (two Spark drivers) rewrite one table on the store at once: each
    partition's commit, as the ledger names it, is in the Delta log and carries that partition, and every
    day holds its rows once. (Without the package's log store two drivers can lose a commit: see
    tests/e2e/test_two_drivers.py.)"""
    halves = [(KEYS[0], KEYS[3]), (KEYS[4], KEYS[-1])]
    runs = [
        store.start(
            "run",
            "s3_orders",
            "--start",
            a,
            "--end",
            b,
            "--chunk-partitions",
            "1",
            "--reprocess",
            "all",
            log=f"half{i}.log",
        )
        for i, (a, b) in enumerate(halves)
    ]
    for proc, log in runs:
        try:
            assert proc.wait(400) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert store.ledger("s3_orders") == dict.fromkeys(KEYS, Status.COMPLETE)
    assert store.rows_by_day("s3_orders") == EVERY_DAY_ONCE
    with store.settings():
        ledger = Ledger("s3a://lake/s3_orders/_backfill_progress")
        latest = {k: s for k, s in ledger.current("s3_orders").items()}
        commits = {}
        for key, state in latest.items():
            assert state.table_version is not None, state
            text = read_text(f"s3a://lake/s3_orders/orders/_delta_log/{state.table_version:020d}.json")
            assert text is not None, f"commit {state.table_version} of {key} is not in the log"
            info = next(json.loads(line)["commitInfo"] for line in text.splitlines() if '"commitInfo"' in line)
            assert key in info["userMetadata"], (key, info["userMetadata"])
            commits[key] = state.table_version
    assert len(set(commits.values())) == len(KEYS)  # one commit each: none overwrote another


#: The target's Delta commits (``_delta_log/<20 digits>.json``), as Spark writes them through the package's log store.
COMMIT_PUT = r"/throttled_orders/orders/_delta_log/\d{20}\.json"


def test_a_throttling_slow_store_that_loses_a_commits_answer_still_gets_every_partition_once(store: Store) -> None:
    """Every 9th request answered 503 SlowDown, every 11th held 0.3 s, and the answer to one commit of the
    target lost after the store wrote it: every client (S3A, delta-rs, pyarrow) retries with backoff, the
    lost answer is recognised as the package's own commit (its writer id), nothing is written twice."""
    days = KEYS[:2]
    args = ["run", "throttled_orders", "--start", days[0], "--end", days[-1], "--chunk-partitions", "2"]
    rules = FaultRules(throttle_every=9, slow_every=11, slow_s=0.3, lose_ack_of=COMMIT_PUT)
    with faulty_proxy(store.server.endpoint, rules) as proxy:
        code, out = store.cli(*args, env={**store.env, "BACKFILL_S3_ENDPOINT": proxy.endpoint})
    assert code == 0, out
    print(dict(proxy.counts), dict(proxy.statuses))
    assert proxy.counts["throttled"] > 10 and proxy.counts["slowed"] > 5, proxy.counts  # the faults happened
    assert len(proxy.lost_acks) == 1, proxy.lost_acks
    assert store.ledger("throttled_orders") == dict.fromkeys(days, Status.COMPLETE)
    assert store.rows_by_day("throttled_orders") == dict.fromkeys(days, ROWS_PER_DAY)  # nothing twice
    with store.settings():
        location = "s3a://lake/throttled_orders/orders"
        history = DeltaTable(location, storage_options=delta_options(location)).history()
    chunks = [h for h in history if str(h.get("userMetadata", "")).startswith("prefect-backfill run=")]
    assert len(chunks) == 1, history  # the chunk's one commit: its lost answer did not make a second one


def test_wrong_credentials_are_not_retried(store: Store) -> None:
    """Throttling is retried; a refusal is not: a handful of 403s, not a retry storm, then one line."""
    with faulty_proxy(store.server.endpoint, FaultRules()) as proxy:
        env = {**store.env, "BACKFILL_S3_ENDPOINT": proxy.endpoint, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        code, out = store.cli("status", "s3_orders", env=env, timeout=120)
    assert code != 0 and "refused access to bucket 'lake' (HTTP 403)" in out, out
    assert 0 < proxy.statuses[403] <= 4 and proxy.counts["requests"] == sum(proxy.statuses.values()), proxy.statuses
