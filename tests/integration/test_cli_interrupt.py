"""Ctrl-C and SIGTERM on a real ``backfill run`` as users send them: a terminal's Ctrl-C signals the whole
foreground process group (the CLI, the Spark JVM and whatever else it started), a worker cancelling a
flow run sends SIGTERM to its process group. The CLI is a real process with its embedded Prefect server
and Spark; one lake is reused through the file, run after run, as a user would: what one stop leaves
behind is what the next run finds.

What every stop must give: the right exit code (130, 143) within the bound (:data:`STOP_GRACE_S` and a
little), a line saying how far the run got and the command that resumes, no partition left RUNNING, no
commit after the run ended, no process left behind (the detached embedded server included), no traceback
and no logging to a dead API; and the printed command finishes the backfill.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deltalake import DeltaTable

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from prefect_backfill.stopping import STOP_GRACE_S

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
BACKFILL = str(Path(sys.executable).parent / "backfill")
NAME = "ctrl_c_orders"
KEYS = [f"2024-01-0{d}" for d in range(1, 9)]  # the whole bronze: every stop below leaves some to do
#: One partition per job, one at a time: every moment of a run (startup, a chunk's Spark job, between
#: chunks) lasts long enough to be hit on purpose.
ARGS = ["run", NAME, "--start", KEYS[0], "--end", KEYS[-1], "--max-concurrency", "1", "--retries", "0"]
ARGS += ["--chunk-partitions", "1"]
RESUME = f"backfill run {NAME} --start {KEYS[0]} --end {KEYS[-1]} --max-concurrency 1 --retries 0 --chunk-partitions 1"
BOUND_S = STOP_GRACE_S + 5  # the documented bound, and a little for the interpreter's own exit


@dataclass
class Cli:
    """One lake, one Prefect home, the CLI started as a user starts it."""

    tmp: Path
    env: dict[str, str]

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.tmp / "silver" / "_backfill_progress")

    @property
    def target(self) -> str:
        return str(self.tmp / "silver" / "orders")

    def statuses(self) -> dict[str, Status]:
        return {key: state.status for key, state in self.ledger.current(NAME).items()}

    def start(
        self, label: str, argv: list[str] | None = None, terminal: bool = False, env: dict[str, str] | None = None
    ) -> Run:
        log = self.tmp / f"{label}.log"
        command = [BACKFILL, *(argv or ARGS)]
        if terminal:  # a real pseudo-terminal: what is typed on stdin reaches the CLI through its line discipline
            command = ["script", "-qfec", shlex.join(command), "/dev/null"]
        with log.open("wb") as out:  # a file, not a pipe: Spark's and Prefect's children may outlive the CLI
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if terminal else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env if env is None else env,
                cwd=ROOT,
                start_new_session=True,  # its own group, as a shell gives a foreground job
            )
        return Run(proc, log)

    def _committed(self) -> bool:
        """Whether the target has a first commit: a stop while the empty target is being created can leave
        ``_delta_log/`` without one, which Delta (and the next run, which creates it) reads as no table."""
        return any((Path(self.target) / "_delta_log").glob("*.json"))

    def commits(self) -> int:
        """Writes committed to the target (creating the empty table is not one)."""
        if not self._committed():
            return 0
        history = DeltaTable(self.target).history()
        return sum(1 for c in history if "predicate" in (c.get("operationParameters") or {}))

    def rows(self) -> int:
        if not self._committed():
            return 0
        return sum(DeltaTable(self.target).get_add_actions(flatten=True).column("num_records").to_pylist())

    def servers(self) -> list[int]:
        """Embedded servers (our detached ones) serving this test's Prefect home, still alive."""
        alive = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if b"prefect_backfill._server_child" not in (entry / "cmdline").read_bytes():
                    continue
                if str(self.tmp / "prefect").encode() in (entry / "environ").read_bytes():
                    alive.append(int(entry.name))
        return alive


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def output(self) -> str:
        """What the CLI printed, without a terminal's colours and cursor moves."""
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.log.read_text(errors="replace")).replace("\r", "")

    def signal(self, signum: int) -> float:
        """Signal the whole process group (what a terminal or a worker does); when."""
        os.killpg(self.proc.pid, signum)
        return time.monotonic()

    def type(self, text: bytes) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Whatever is left of a process group this test started."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cli(bronze: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    tmp = tmp_path_factory.mktemp("ctrl_c")
    modules = tmp / "modules"
    modules.mkdir()
    target = tmp / "silver" / "orders"
    (modules / "ctrl_c_pipelines.py").write_text(
        textwrap.dedent(
            f"""
            import time

            from pyspark.sql import functions as F

            from prefect_backfill import Pipeline, register


            def slow_copy(orders):
                def crawl(value):
                    time.sleep(0.08)  # in Spark's Python workers: a partition's job runs for a few seconds
                    return value

                return orders.withColumn("amount", F.udf(crawl, "double")(F.col("amount")))


            register(Pipeline({NAME!r}, {bronze!r}, {str(target)!r}, "order_date", slow_copy, "1"))
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env |= {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{modules}",
        "BACKFILL_PIPELINE_MODULES": "ctrl_c_pipelines",
        "BACKFILL_DATA_DIR": str(tmp / "data"),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp / "results"),
        "PREFECT_HOME": str(tmp / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    yield Cli(tmp, env)


def _until(what: Callable[[], bool], run: Run, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert run.proc.poll() is None, run.output
        assert time.monotonic() < deadline, run.output
        time.sleep(0.2)


def _mid_chunk(cli: Cli, run: Run) -> None:
    """Wait until one more partition than before is COMPLETE and the next one's Spark job is running."""
    before = sum(1 for s in cli.statuses().values() if s is Status.COMPLETE)

    def running() -> bool:
        statuses = list(cli.statuses().values())
        return statuses.count(Status.COMPLETE) > before and Status.RUNNING in statuses

    _until(running, run)
    time.sleep(1.0)  # into the job (a partition takes a few seconds)


def _stopped_well(cli: Cli, run: Run, signalled: float, expected: int, started: int = 0, resume: str = RESUME) -> None:
    """What every stop must give (see the module's docstring)."""
    try:
        code = run.wait(BOUND_S + 30)
    finally:
        run.stop()
    took = time.monotonic() - signalled
    out = run.output
    assert code == expected, out
    assert took < BOUND_S, f"exited {took:.1f} s after the signal\n{out}"
    lines = [line for line in out.splitlines() if "interrupted: " in line]
    assert lines, out
    progress, command = lines[-1].split("interrupted: ", 1)[1].split("; resume with: ")
    assert command.strip() == resume, out
    statuses = cli.statuses()
    done = sum(1 for s in statuses.values() if s is Status.COMPLETE)
    assert Status.RUNNING not in statuses.values(), statuses
    assert done >= started
    assert progress.endswith("left") or progress.startswith("progress unknown"), out
    version = cli.commits()
    assert version == done, f"{version=} {statuses=}"  # one commit per complete partition, none more
    for noise in ("Traceback", "EventsWorker", "Connection refused", "ConnectError"):
        assert noise not in out, out
    time.sleep(3)
    assert cli.commits() == version, "a chunk committed after the run ended"
    deadline = time.monotonic() + 15
    while cli.servers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert cli.servers() == [], "the embedded server outlived the CLI"


def test_ctrl_c_before_the_flow_starts_exits_130_and_writes_nothing(cli: Cli) -> None:
    run = cli.start("before")
    _until(lambda: f"plan for {NAME}" in run.output, run)  # planned; Spark and the embedded server starting
    time.sleep(1)
    _stopped_well(cli, run, run.signal(signal.SIGINT), 130)
    assert cli.commits() == 0 and cli.rows() == 0


def test_ctrl_c_typed_in_a_terminal_mid_chunk_cancels_the_job_and_exits_130(cli: Cli) -> None:
    run = cli.start("terminal", terminal=True)
    _mid_chunk(cli, run)
    _stopped_well(cli, run, run.type(b"\x03"), 130, started=1)


def test_sigterm_to_the_group_mid_chunk_exits_143(cli: Cli) -> None:
    done = sum(1 for s in cli.statuses().values() if s is Status.COMPLETE)
    run = cli.start("sigterm")
    _mid_chunk(cli, run)
    _stopped_well(cli, run, run.signal(signal.SIGTERM), 143, started=done + 1)


def test_ctrl_c_as_a_chunk_commits_exits_130_with_that_chunk_complete(cli: Cli) -> None:
    """The moment between chunks: the signal lands as soon as the ledger shows one more partition COMPLETE
    (its commit landed; the next chunk is being submitted or has just started)."""
    done = sum(1 for s in cli.statuses().values() if s is Status.COMPLETE)
    run = cli.start("between")
    _until(lambda: sum(1 for s in cli.statuses().values() if s is Status.COMPLETE) > done, run)
    _stopped_well(cli, run, run.signal(signal.SIGINT), 130, started=done + 1)


def test_a_second_ctrl_c_exits_at_once(cli: Cli) -> None:
    done = sum(1 for s in cli.statuses().values() if s is Status.COMPLETE)
    run = cli.start("twice")
    _mid_chunk(cli, run)
    run.signal(signal.SIGINT)
    # The second only once the first was taken: two signals before Python's handler runs count as one
    # (seen on a loaded machine), and this test is about the second.
    _until(lambda: "stopping (no new chunks" in run.output, run, timeout=30)
    second = run.signal(signal.SIGINT)
    try:
        code = run.wait(BOUND_S + 30)
    finally:
        run.stop()
    assert code == 130, run.output
    assert time.monotonic() - second < 8, run.output
    assert "a second signal: exiting now" in run.output, run.output
    assert "resume with: " + RESUME in run.output, run.output
    assert sum(1 for s in cli.statuses().values() if s is Status.COMPLETE) >= done + 1
    # Nothing half-written: whatever was in flight committed whole or not at all (the resume below checks it).


def test_ctrl_c_at_the_canary_prompt_exits_130_with_the_canary_written(cli: Cli) -> None:
    done = sum(1 for s in cli.statuses().values() if s is Status.COMPLETE)
    run = cli.start("canary", [*ARGS, "--canary", "1"], terminal=True)
    _until(lambda: "Write the rest of the range with this version?" in run.output, run)
    _stopped_well(cli, run, run.type(b"\x03"), 130, started=done + 1, resume=f"{RESUME} --canary 1")
    assert "rejected" not in run.output  # a stop is said as a stop, not as the gate's verdict


def test_the_printed_command_finishes_the_backfill(cli: Cli) -> None:
    # With users' JVM exactly: none of the suite's JAVA_TOOL_OPTIONS (C1 only, no codegen; tests/conftest.py).
    users = {k: v for k, v in cli.env.items() if k != "JAVA_TOOL_OPTIONS"}
    run = cli.start("resume", shlex.split(RESUME)[1:], env=users)
    try:
        code = run.wait(300)
    finally:
        run.stop()
    assert code == 0, run.output
    assert cli.statuses() == dict.fromkeys(KEYS, Status.COMPLETE)
    assert "held by another live run" not in run.output  # the forced exit's lease did not block it
    assert cli.rows() == 40 * len(KEYS)  # every partition once: nothing duplicated, nothing lost
    # A quiet start: the terminal shows the package's own lines; the JVM's went to its log file.
    assert not [line for line in run.output.splitlines() if JVM_CHATTER.search(line)], run.output
    logs = list((Path(os.environ["BACKFILL_CACHE_DIR"]) / "logs").glob(f"spark-*-{run.proc.pid}.log"))
    assert logs and JVM_CHATTER.search(logs[0].read_text()), "the JVM's start-up lines are in no log file"


# What Spark, Ivy and the JVM print when a session starts (they used to reach the user's terminal).
JVM_CHATTER = re.compile(
    r"WARNING: Using incubator|log4j|\bWARN\b|^:: |Ivy Default Cache|added as a dependency|artifacts copied"
    r"|Setting default log level|NativeCodeLoader|\[Stage \d|Picked up JAVA_TOOL_OPTIONS"
)


def test_the_same_command_once_more_has_nothing_to_do_and_starts_nothing(cli: Cli) -> None:
    """Nothing to do costs nothing: the plan and the summary, exit 0, and no flow run, no Prefect server
    (its database untouched) and no ledger event: a user who reruns to ask "is it done?" gets the answer
    at once (docs/benchmarks.md has the time)."""
    database = cli.tmp / "prefect" / "prefect.db"
    assert database.exists()  # the runs above used the embedded server
    before = (database.stat().st_mtime_ns, _flow_runs(database), len(cli.ledger.events(NAME)))
    run = cli.start("nothing-to-do", shlex.split(RESUME)[1:])
    try:
        code = run.wait(120)
    finally:
        run.stop()
    assert code == 0, run.output
    assert f"0 to run, {len(KEYS)} skipped of {len(KEYS)}" in run.output
    assert f"{NAME}: 0 completed, 0 cached, {len(KEYS)} skipped, 0 failed of {len(KEYS)}" in run.output
    assert (database.stat().st_mtime_ns, _flow_runs(database), len(cli.ledger.events(NAME))) == before
    assert not cli.servers()


def _flow_runs(database: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return int(db.execute("select count(*) from flow_run").fetchone()[0])
