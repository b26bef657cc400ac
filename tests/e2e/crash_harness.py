"""Crash the real ``backfill run`` CLI with ``kill -9`` and check that a plain rerun repairs everything.

Shared by ``tests/e2e/test_crash_recovery.py`` (a few trials) and ``bench/crash_matrix.py`` (many).

The path under test is the default one: the ``backfill`` CLI as a user starts it, with Prefect's
embedded server (no ``PREFECT_API_URL``), its own process group (so ``os.killpg(pgid, SIGKILL)`` takes
the CLI, the embedded server and the Spark JVM at once: a machine losing power, a container OOM-killed).
Everything it writes (Prefect database, cache records, bronze, silver, ledger) lives under one folder, and
a lake is reused across trials: what one crash leaves behind is what the next run finds.

A trial: rewrite bronze with new content (so a skipped partition cannot pass as done), start a plain
``backfill run`` of the whole range, SIGKILL its process group at a kill point drawn from
:data:`PHASES`, start the same plain command again, and check what a user would check (:func:`check_lake`):
exit 0 in time, no partition "held by another live run", every partition's latest ledger state COMPLETE and
written after the change, and silver equal, row for row, to the transform of the current bronze.

How the phases are detected (the test process polls the ledger folder, never the CLI's internals):

- ``startup``: a delay after the start, drawn as a fraction of the measured time from the start to the
  run's first ledger event (interpreter, embedded server, Spark JVM, target check); killed at once if an
  event shows up first.
- ``mid-partition``: the n-th RUNNING event of the run is visible and that partition has no COMPLETE or
  FAILED yet; killed after a short random delay (a partition takes ``sleep_s`` plus Spark work).
- ``between``: right after the run's n-th COMPLETE event becomes visible: that lane has committed and is
  finishing its task run (cache record, Prefect state) before the next partition starts.
- ``commit``: the n-th ledger commit of the run (the first is the PENDING claims commit) is caught in
  flight: the moment a new data file appears in the ledger's folder, before or just as its
  ``_delta_log`` entry lands (polled every few milliseconds; :attr:`KillOutcome.orphans` says whether the
  kill beat the log entry).

The phase actually hit is classified afterwards from the ledger the dead run left
(:func:`observed_phase`), since RUNNING events are group-committed without waiting.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import TableNotFoundError

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.e2e.crash_pipelines import NAME, SILVER_COLUMNS, expected_rows

__all__ = [
    "HELD",
    "PHASES",
    "CliRun",
    "CrashLake",
    "KillOutcome",
    "KillPoint",
    "Trial",
    "TrialResult",
    "check_lake",
    "kill_at",
    "observed_phase",
    "plan_trials",
    "run_slot_leak",
    "run_trial",
    "start_cli",
    "stop_all",
    "wait_run",
    "write_bronze",
]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PHASES = ("startup", "mid-partition", "between", "commit")
HELD = "held by another live run"
FIRST_DAY = date(2024, 1, 1)
DEFAULT_STARTUP_S = 10.0  # before any run was measured
RUN_TIMEOUT_S = 240.0  # a run that takes longer hangs
# What a run prints while another run's lease keeps it waiting (prefect_backfill.coordination): after two
# kills the plain run must never print it. A wall-clock budget cannot tell a leak from a loaded machine
# (a rerun of six partitions took 82 s with three pytest workers on two cores); these lines can.
WAITED = ("waiting for a slot of", "waiting for the claims lock of", HELD)
_TERMINAL = {Status.COMPLETE.value, Status.FAILED.value}


# -- the lake ---------------------------------------------------------------------------------------


@dataclass
class CrashLake:
    """One folder holding everything the CLI writes, reused by successive runs and trials."""

    root: Path
    days: int = 8
    sleep_s: float = 0.7
    max_concurrency: int = 2
    #: A control, not a test of the fix: bump the pipeline's version with each bronze content (so the
    #: current code knows its partitions are due) and turn run coordination off (no claims, no cap). What
    #: the fix must achieve without help; it shows the harness passes when recovery works.
    control: bool = False
    extra_args: tuple[str, ...] = ()  # appended to the command of every run (the bench's --cli-arg)
    cluster_by: str = ""  # the target created liquid-clustered by these columns (CRASH_CLUSTER_BY)
    #: A Hive metastore (thrift://…): source and target are then the catalog tables bronze.crash_orders (over
    #: :attr:`bronze`) and silver.crash_orders (managed, in database silver at data/silver: see catalog_sql).
    metastore_uri: str = ""
    startup_s: list[float] = field(default_factory=list)  # measured: start → first ledger event
    bronze_salt: int = 0  # the current bronze content

    def __post_init__(self) -> None:
        for sub in ("prefect", "data", "results", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def bronze(self) -> str:
        return str(self.root / "data" / "bronze" / "orders")

    @property
    def silver(self) -> str:
        """Where silver's files are (a catalog target's: its database's folder, its name)."""
        return str(self.root / "data" / "silver" / ("crash_orders" if self.metastore_uri else "orders"))

    def catalog_sql(self) -> list[str]:
        """The statements that register this lake's tables in its metastore (bronze must exist)."""
        return [
            f"CREATE DATABASE IF NOT EXISTS bronze LOCATION '{self.root / 'data' / 'bronze'}'",
            f"CREATE DATABASE IF NOT EXISTS silver LOCATION '{self.root / 'data' / 'silver'}'",
            f"CREATE TABLE IF NOT EXISTS bronze.crash_orders USING delta LOCATION '{self.bronze}'",
        ]

    @property
    def ledger_path(self) -> Path:
        return self.root / "data" / "silver" / "_backfill_progress"  # beside the target: the default

    @property
    def keys(self) -> list[str]:
        return [(FIRST_DAY + timedelta(days=i)).isoformat() for i in range(self.days)]

    @property
    def command(self) -> list[str]:
        """The plain command a user types, and types again after a crash."""
        command = [str(BIN / "backfill"), "run", NAME, "--start", self.keys[0], "--end", self.keys[-1]]
        if self.max_concurrency != 2:  # 2 is the CLI's default
            command += ["--max-concurrency", str(self.max_concurrency)]
        return command + list(self.extra_args)

    def env(self) -> dict[str, str]:
        """The CLI's environment: the default path (embedded server), everything under ``root``."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "BACKFILL_", "CRASH_")) or k == "BACKFILL_CACHE_DIR"
        }
        env.setdefault("BACKFILL_CACHE_DIR", str(ROOT / ".cache"))  # Delta's jars, fetched once
        env.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
                "PREFECT_HOME": str(self.root / "prefect"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
                "PREFECT_LOGGING_LEVEL": "INFO",  # the flow's "held by another live run" line is INFO
                "BACKFILL_DATA_DIR": str(self.root / "data"),
                "BACKFILL_RESULT_STORAGE_PATH": str(self.root / "results"),
                "BACKFILL_PIPELINE_MODULES": "tests.e2e.crash_pipelines",
                "CRASH_BRONZE": self.bronze,
                "CRASH_SILVER": self.silver,
                "CRASH_SLEEP_S": str(self.sleep_s),
                "CRASH_CLUSTER_BY": self.cluster_by,
                "COLUMNS": "240",  # Rich wraps log lines at 80 columns when not on a terminal
                # Kilobyte test days: without this the whole range is one chunk (the 32 MiB minimum share),
                # and the kill points inside a second chunk and its ledger commits would never come.
                "BACKFILL_CHUNK_MIN_SHARE_MB": "0",
            }
        )
        if self.control:
            env.update({"CRASH_VERSION": f"c{self.bronze_salt}", "BACKFILL_COORDINATE": "false"})
        if self.metastore_uri:  # what a user of catalog tables sets: the metastore, and where the ledger goes
            env.update(
                {
                    "CRASH_BRONZE": "bronze.crash_orders",
                    "CRASH_SILVER": "silver.crash_orders",
                    "BACKFILL_METASTORE_URI": self.metastore_uri,
                    "BACKFILL_LEDGER_PATH": str(self.ledger_path),
                }
            )
        return env

    def events(self) -> list[dict[str, Any]]:
        return list(Ledger(self.ledger_path).events(NAME).to_pylist())

    def run_ids(self) -> set[str]:
        return {str(e["run_id"]) for e in self.events()}

    def log_version(self) -> int:
        """The latest commit of the ledger's Delta log (-1: no table yet), from a directory listing."""
        try:
            names = os.listdir(self.ledger_path / "_delta_log")
        except FileNotFoundError:
            return -1
        versions = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
        return max(versions, default=-1)

    def ledger_data_files(self) -> set[str]:
        """The ledger's data files, counting one still being written (``name#1``, delta-rs stages a file
        under that name and renames it; its log entry comes after) under its final name."""
        try:
            names = [e.name for e in os.scandir(self.ledger_path)]
        except FileNotFoundError:
            return set()
        return {re.sub(r"#\d+$", "", n) for n in names if ".parquet" in n}

    def startup_estimate(self) -> float:
        """Median seconds from a start to the run's first ledger event, over the last runs measured."""
        return statistics.median(self.startup_s[-5:]) if self.startup_s else DEFAULT_STARTUP_S

    def note_startup(self, run: CliRun, seconds: float) -> None:
        if not run.fresh_database:  # the first start migrates Prefect's database: not typical
            self.startup_s.append(seconds)


def write_bronze(lake: CrashLake, salt: int, rows_per_day: int) -> None:
    """(Re)write bronze: ``rows_per_day`` orders per day, every value depending on ``salt``, so no
    partition has the same content as under another salt. With delta-rs: no JVM in the test process."""
    n = lake.days * rows_per_day
    ids = [salt * 1_000_000 + i for i in range(n)]
    table = pa.table(
        {
            "order_id": pa.array(ids, pa.int64()),
            "order_date": pa.array([FIRST_DAY + timedelta(days=i // rows_per_day) for i in range(n)], pa.date32()),
            "customer_id": pa.array([(i * 7919 + salt) % 5000 for i in ids], pa.int64()),
            "amount_cents": pa.array([(i * 104729 + salt * 7907) % 100_000 for i in ids], pa.int64()),
        }
    )
    write_deltalake(lake.bronze, table, mode="overwrite", partition_by=["order_date"], schema_mode="overwrite")
    lake.bronze_salt = salt


def read_rows(path: str, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """All rows of a Delta table (partition columns included), sorted; [] if there is no table yet (no
    folder, or no commit in its log: a run killed before its first commit). Anything else (a log that
    cannot be read, a missing column) is raised: an unreadable silver must not pass as an empty one."""
    try:
        table = DeltaTable(path)
    except TableNotFoundError:
        return []
    reader = QueryBuilder().register("t", table).execute(f"SELECT {', '.join(columns)} FROM t")
    rows = pa.table(reader).to_pylist()  # an Arrow stream: DataFusion reads partition values and deletion vectors
    return sorted(tuple(r[c] for c in columns) for r in rows)


def current_bronze(lake: CrashLake) -> list[dict[str, Any]]:
    cols = ("order_id", "order_date", "customer_id", "amount_cents")
    return [dict(zip(cols, row, strict=True)) for row in read_rows(lake.bronze, cols)]


# -- a CLI run --------------------------------------------------------------------------------------


@dataclass(eq=False)
class CliRun:
    proc: subprocess.Popen[bytes]
    log: Path
    started: float  # time.monotonic() at start
    fresh_database: bool = False  # the embedded server creates Prefect's database on this start

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the CLI leads its own process group

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def last_steps(self, lines: int = 6) -> str:
        """The last Prefect log lines (``HH:MM:SS.fff | LEVEL | …``): where a run got to, past Spark's noise."""
        steps = [ln for ln in self.output().splitlines() if re.match(r"\d\d:\d\d:\d\d\.\d+ \|", ln)]
        return "\n".join(steps[-lines:])

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def kill(self) -> None:
        """SIGKILL the whole process group (CLI, embedded server, JVM), then wait until it is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _group_alive(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _LIVE.discard(self)


_LIVE: set[CliRun] = set()  # started and not yet seen to exit: stop_all() ends them


def stop_all() -> None:
    """SIGKILL every CLI this process started that may still run. Each runs in its own session, so a
    Ctrl-C or a failing test would otherwise leave it (and its server and JVM) running."""
    for run in list(_LIVE):
        run.kill()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_cli(lake: CrashLake, label: str) -> CliRun:
    log = lake.root / "logs" / f"{label}.log"
    fresh = not (lake.root / "prefect" / "prefect.db").exists()
    out = log.open("wb")
    try:
        proc = subprocess.Popen(
            lake.command,
            cwd=ROOT,
            env=lake.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        out.close()  # the child holds its own copy
    run = CliRun(proc, log, time.monotonic(), fresh)
    _LIVE.add(run)
    return run


def wait_run(lake: CrashLake, run: CliRun, known: set[str], timeout: float) -> int | None:
    """Wait for ``run`` to exit (its code; None after ``timeout`` seconds: it hung and is SIGKILLed),
    noting how long it took to its first ledger event (``known``: run ids in the ledger before it)."""
    deadline = run.started + timeout
    seen_version, first = -2, None
    while run.proc.poll() is None:
        if time.monotonic() > deadline:
            run.kill()
            return None
        if first is None and (version := lake.log_version()) != seen_version:
            seen_version = version
            if version >= 0 and _run_events(lake, known):
                first = run.elapsed()
        time.sleep(0.1)
    _LIVE.discard(run)
    if first is not None:
        lake.note_startup(run, first)
    return run.proc.returncode


# -- kill points ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KillPoint:
    """Where to kill: ``phase``; ``nth`` RUNNING / COMPLETE / commit of the run; ``delay`` seconds after
    it (for ``startup``: a fraction of the measured start-up time instead)."""

    phase: str
    nth: int = 1
    delay: float = 0.0

    def describe(self) -> str:
        if self.phase == "startup":
            return f"startup@{self.delay:.0%}"
        return f"{self.phase}#{self.nth}" + (f"+{self.delay:.2f}s" if self.delay else "")


def draw_kill_point(rng: random.Random, phase: str, days: int, concurrency: int) -> KillPoint:
    if phase == "startup":
        return KillPoint(phase, 0, rng.uniform(0.05, 0.85))
    if phase == "mid-partition":
        return KillPoint(phase, rng.randint(1, min(3, days)), rng.uniform(0.0, 0.3))
    if phase == "between":
        return KillPoint(phase, rng.randint(1, max(1, days - concurrency - 1)))
    if phase == "commit":
        return KillPoint(phase, rng.randint(1, 5))
    raise ValueError(f"unknown phase {phase!r}: one of {', '.join(PHASES)}")


@dataclass
class KillOutcome:
    point: KillPoint
    killed: bool  # False: the run ended by itself before the kill point
    at_s: float  # seconds after the run's start
    observed: str  # the phase the ledger shows (observed_phase)
    exit_code: int | None = None  # when not killed
    timed_out: bool = False  # the kill point never came (killed anyway at the timeout)
    orphans: int = 0  # ledger data files the log never referenced: the kill beat a commit

    def describe(self) -> str:
        if not self.killed:
            return f"not killed: exited {self.exit_code} before {self.point.describe()}"
        extra = " (point not reached: killed at the timeout)" if self.timed_out else ""
        extra += f" ({self.orphans} uncommitted ledger file(s))" if self.orphans else ""
        return f"killed at {self.at_s:.1f}s, ledger shows {self.observed}{extra}"


def _run_events(lake: CrashLake, known: set[str]) -> list[dict[str, Any]]:
    return [e for e in lake.events() if str(e["run_id"]) not in known]


def observed_phase(events: list[dict[str, Any]]) -> str:
    """What the ledger says a run (its ``events``) was doing when it stopped."""
    if not events:
        return "startup"
    started = {e["partition"] for e in events if e["status"] == Status.RUNNING.value}
    finished = {e["partition"] for e in events if e["status"] in _TERMINAL}
    if started - finished:
        return "mid-partition"
    if not finished:
        return "claimed"  # PENDING recorded, no partition started yet (as far as the ledger knows)
    return "between"


def kill_at(lake: CrashLake, run: CliRun, point: KillPoint, known: set[str], timeout: float) -> KillOutcome:
    """Watch the ledger until ``point``, then SIGKILL the run's process group. ``known``: run ids in the
    ledger before this run started (its events are the others)."""
    files_before = lake.ledger_data_files()
    startup = lake.startup_estimate()
    deadline = run.started + timeout
    seen_version = -2
    events: list[dict[str, Any]] = []
    first_event: float | None = None

    def reached() -> bool:
        nonlocal seen_version, events, first_event
        if point.phase == "commit":
            return len(lake.ledger_data_files() - files_before) >= point.nth
        version = lake.log_version()
        if version != seen_version:  # read the events only when the log moved
            seen_version = version
            events = _run_events(lake, known) if version >= 0 else []
            if events and first_event is None:
                first_event = run.elapsed()
        if point.phase == "startup":
            return bool(events) or run.elapsed() >= point.delay * startup
        if point.phase == "mid-partition":
            running = list(dict.fromkeys(e["partition"] for e in events if e["status"] == Status.RUNNING.value))
            finished = {e["partition"] for e in events if e["status"] in _TERMINAL}
            return len(running) >= point.nth and bool(set(running) - finished)
        completes = {e["partition"] for e in events if e["status"] == Status.COMPLETE.value}
        return len(completes) >= point.nth

    poll = 0.003 if point.phase == "commit" else 0.05
    timed_out = False
    while True:
        if run.proc.poll() is not None:
            _LIVE.discard(run)
            return KillOutcome(
                point, False, run.elapsed(), observed_phase(_run_events(lake, known)), run.proc.returncode
            )
        if reached():
            if point.phase == "mid-partition" and point.delay:
                time.sleep(point.delay)
            break
        if time.monotonic() > deadline:
            timed_out = True
            break
        time.sleep(poll)
    at = run.elapsed()
    run.kill()
    after = _run_events(lake, known)
    if first_event is not None:
        lake.note_startup(run, first_event)
    return KillOutcome(point, True, at, observed_phase(after), None, timed_out, _orphans(lake, files_before))


def _orphans(lake: CrashLake, before: set[str]) -> int:
    """New data files in the ledger folder that no commit mentions: the kill came between writing a
    commit's data file and its log entry."""
    new = lake.ledger_data_files() - before
    if not new:
        return 0
    log = lake.ledger_path / "_delta_log"
    text = "".join(p.read_text(errors="replace") for p in log.glob("*.json"))
    return sum(1 for n in new if n not in text)


# -- checks -----------------------------------------------------------------------------------------


def check_lake(lake: CrashLake, before_change: set[str], output: str) -> list[str]:
    """Everything a user expects after a rerun that exited 0, as a list of problems (empty: all good).

    ``before_change``: run ids in the ledger before bronze last changed; ``output``: the rerun's output.
    """
    problems: list[str] = []
    flat = re.sub(r"\s+", " ", output)
    if HELD in flat:
        line = next((ln for ln in output.splitlines() if "held by" in ln), HELD)
        problems.append(f"the rerun left partitions to the dead run: {line.strip()!r}")
    current = Ledger(lake.ledger_path).current(NAME)
    bad = []
    for key in lake.keys:
        state = current.get(key)
        if state is None:
            bad.append(f"{key}: never recorded")
            continue
        cached_from = state.cached_from
        if state.status is not Status.COMPLETE:
            bad.append(f"{key}: {state.status.value} (run {state.run_id[:8]})")
        elif state.run_id in before_change:
            bad.append(f"{key}: COMPLETE from run {state.run_id[:8]}, before bronze changed")
        elif cached_from and cached_from in before_change:
            bad.append(f"{key}: served from the cache of run {cached_from[:8]}, before bronze changed")
    if bad:
        problems.append(f"ledger: {len(bad)} of {len(lake.keys)} partitions not done after the change: {bad}")
    expected = expected_rows(current_bronze(lake))
    actual = read_rows(lake.silver, SILVER_COLUMNS)
    if actual != expected:
        problems.append(f"silver differs from the transform of the current bronze: {_diff(expected, actual)}")
    return problems


def _diff(expected: list[tuple[Any, ...]], actual: list[tuple[Any, ...]]) -> str:
    def by_day(rows: list[tuple[Any, ...]]) -> dict[str, set[tuple[Any, ...]]]:
        out: dict[str, set[tuple[Any, ...]]] = {}
        for row in rows:
            out.setdefault(str(row[1]), set()).add(row)
        return out

    want, got = by_day(expected), by_day(actual)
    days = sorted(d for d in set(want) | set(got) if want.get(d) != got.get(d))
    shown = ", ".join(f"{d} ({len(got.get(d, ()))} rows, {len(want.get(d, ()))} expected)" for d in days)
    return f"{len(actual)} rows vs {len(expected)} expected; days that differ: {shown}"


# -- trials -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    index: int
    point: KillPoint
    salt: int  # bronze content
    rows_per_day: int

    @property
    def phase(self) -> str:
        return self.point.phase

    def describe(self) -> str:
        return f"trial{self.index}-{self.point.describe()}"


def plan_trials(seed: int, count: int, days: int = 8, concurrency: int = 2) -> list[Trial]:
    """``count`` trials from ``seed``: every phase at least once (when ``count`` ≥ 4), in a seeded order;
    kill points and bronze contents drawn from the same generator. Same seed, same trials."""
    rng = random.Random(seed)
    phases = list(PHASES)
    rng.shuffle(phases)
    phases += [rng.choice(PHASES) for _ in range(max(0, count - len(phases)))]
    trials = []
    rows = 0
    for index, phase in enumerate(phases[:count]):
        rows = rng.choice([r for r in range(12, 29) if r != rows])  # never the same size twice in a row
        point = draw_kill_point(rng, phase, days, concurrency)
        trials.append(Trial(index, point, salt=seed % 1000 * 1000 + index + 1, rows_per_day=rows))
    return trials


@dataclass
class TrialResult:
    name: str
    kills: list[KillOutcome]
    rerun_exit: int | None  # None: hung (killed at the timeout)
    rerun_s: float
    problems: list[str]
    rerun_log: Path
    wall_s: float = 0.0  # the whole trial: bronze, kill(s), rerun, checks

    @property
    def ok(self) -> bool:
        return not self.problems

    def report(self) -> str:
        lines = [f"{self.name}: " + "; ".join(k.describe() for k in self.kills)]
        lines.append(
            f"  rerun exit {self.rerun_exit} after {self.rerun_s:.1f}s (log {self.rerun_log}); trial {self.wall_s:.1f}s"
        )
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def _kill_problems(outcome: KillOutcome, run: CliRun) -> list[str]:
    if not outcome.killed:
        return [
            f"the run exited {outcome.exit_code} by itself before {outcome.point.describe()} although bronze had "
            f"changed (every partition was due): {run.tail(1500)!r}"
        ]
    if outcome.timed_out:
        return [f"kill point {outcome.point.describe()} not reached in time; last steps: {run.last_steps()!r}"]
    return []


def _rerun(lake: CrashLake, label: str, timeout: float) -> tuple[int | None, float, CliRun]:
    known = lake.run_ids()
    rerun = start_cli(lake, label)
    code = wait_run(lake, rerun, known, timeout)
    return code, rerun.elapsed(), rerun


def _rerun_problems(code: int | None, seconds: float, timeout: float, rerun: CliRun) -> list[str]:
    if code is None:
        return [f"the rerun hung: no exit within {timeout:.0f}s; its last steps: {rerun.last_steps()!r}"]
    if code != 0:
        return [f"the rerun exited {code}, not 0; its output ends: {rerun.tail()!r}"]
    return []


def run_trial(lake: CrashLake, trial: Trial, timeout: float = RUN_TIMEOUT_S) -> TrialResult:
    """Change bronze, kill a plain run at ``trial.point``, run the same command again, check."""
    started = time.monotonic()
    before_change = lake.run_ids()
    write_bronze(lake, trial.salt, trial.rows_per_day)
    killed = start_cli(lake, f"{trial.describe()}-killed")
    outcome = kill_at(lake, killed, trial.point, before_change, timeout)
    problems = _kill_problems(outcome, killed)
    code, seconds, rerun = _rerun(lake, f"{trial.describe()}-rerun", timeout)
    problems += _rerun_problems(code, seconds, timeout, rerun)
    problems += check_lake(lake, before_change, rerun.output())
    return TrialResult(trial.describe(), [outcome], code, seconds, problems, rerun.log, time.monotonic() - started)


def run_slot_leak(lake: CrashLake, seed: int, timeout: float = RUN_TIMEOUT_S) -> TrialResult:
    """Two runs in a row SIGKILLed once they work (each holding its cap slots and claims), then a plain
    run: it must complete everything without ever waiting for the dead runs' slots, claims or lock."""
    started = time.monotonic()
    rng = random.Random(seed)
    before_change = lake.run_ids()
    write_bronze(lake, salt=seed % 1000 * 1000 + 999, rows_per_day=rng.randint(12, 28))
    kills: list[KillOutcome] = []
    problems: list[str] = []
    for i in range(2):
        point = KillPoint("mid-partition", rng.randint(1, 2), rng.uniform(0.0, 0.5))
        known = lake.run_ids()
        run = start_cli(lake, f"slot-leak-kill{i + 1}")
        outcome = kill_at(lake, run, point, known, timeout)
        kills.append(outcome)
        problems += _kill_problems(outcome, run)
    code, seconds, rerun = _rerun(lake, "slot-leak-rerun", timeout)
    if code is None:
        problems.append(
            f"the run after two kills did not finish within {timeout:.0f}s; its last steps: {rerun.last_steps()!r}"
        )
    elif code != 0:
        problems.append(f"the run after two kills exited {code}, not 0: {rerun.tail()!r}")
    waited = [line for line in rerun.output().splitlines() if any(mark in line for mark in WAITED)]
    if waited:
        problems.append(f"the run after two kills waited for the dead runs: {waited[:3]}")
    problems += check_lake(lake, before_change, rerun.output())
    return TrialResult("slot-leak", kills, code, seconds, problems, rerun.log, time.monotonic() - started)
