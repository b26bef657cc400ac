"""What a user waits for, whole commands from exec to exit: ``backfill run`` of the demo range (fresh and
warm ``PREFECT_HOME``), the same command with nothing left to do, ``status``, ``plan`` and ``--help``,
against one Spark job's process over the same rows.

Why whole processes: the flow's own time is already one job's (docs/benchmarks.md); what is left is per
command (imports, the embedded Prefect server, Spark's start), and only a stopwatch around the process
shows it. Each step runs ``--repeats`` times, each repeat on its own fresh lake; the table gives the median
and the range. "Without bytecode" runs the same command with an empty ``PYTHONPYCACHEPREFIX`` and
``PYTHONDONTWRITEBYTECODE=1``: every module compiled again in each process, as the project's venv was
before ``make`` installed it with ``--compile-bytecode``.

Where the time of a ``backfill run`` goes: each run writes its phase marks
(:mod:`prefect_backfill.phases`, ``BACKFILL_PHASES_FILE``), read here against the moment the process was
started and the moment it ended; the page gives each phase's start, end and length (medians over the
repeats). Phases overlap where the CLI overlaps them (Spark's start and the target's check run while the
embedded server starts).

    python -m bench.fixed_cost                  # 182 days x 2,000 rows, 3 repeats; writes docs/fixed-cost-benchmarks.md
    python -m bench.fixed_cost --days 10 --repeats 1 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES_ENV = "BACKFILL_PHASES_FILE"  # prefect_backfill.phases.ENV (not imported: the bench measures from outside)
START = date(2024, 1, 1)
ONE_JOB = """
import sys
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.engine.spark import get_spark
source, target = sys.argv[1], sys.argv[2]
to_silver_orders(get_spark().read.format("delta").load(source)).write.format("delta").mode("overwrite").partitionBy(
    "order_date"
).save(target)
"""
GENERATE = """
import sys
from prefect_backfill.demo import generate_orders
print(generate_orders(sys.argv[1], sys.argv[2], sys.argv[3], rows_per_day=int(sys.argv[4])))
"""


@dataclass
class Step:
    """One command, timed once per repeat."""

    name: str
    walls: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    #: Per repeat: each phase mark (prefect_backfill.phases) as seconds after the process was started,
    #: with ``"exec"`` (0) and ``"ended"`` (the process's end).
    timelines: list[dict[str, float]] = field(default_factory=list)

    def row(self, baseline: float | None) -> str:
        mid = statistics.median(self.walls)
        spread = f"{min(self.walls):.1f}–{max(self.walls):.1f}" if len(self.walls) > 1 else "–"
        ratio = f"{mid / baseline:.2f}x" if baseline else "–"
        load = f"{max(self.loads):.2f}" if self.loads else "–"
        return f"| {self.name} | {mid:.2f} | {spread} | {ratio} | {load} |"


def _time(step: Step, argv: list[str], env: dict[str, str], expect: tuple[int, ...] = (0,)) -> None:
    step.loads.append(os.getloadavg()[0])
    marks = Path(tempfile.mkdtemp(prefix="phases-")) / "phases.jsonl"
    started_wall, started = time.time(), time.monotonic()
    done = subprocess.run(
        argv, env={**env, PHASES_ENV: str(marks)}, cwd=ROOT, capture_output=True, text=True, check=False
    )
    step.walls.append(time.monotonic() - started)
    if done.returncode not in expect:
        raise SystemExit(f"{step.name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    lines = marks.read_text().splitlines() if marks.exists() else []
    step.timelines.append(timeline(lines, started_wall, step.walls[-1]))


def timeline(lines: list[str], started_wall: float, wall: float) -> dict[str, float]:
    """The marks of one process (JSON lines of prefect_backfill.phases) as seconds after its exec; the
    first of a repeated mark counts (a phase entered twice, as the server wait can be, keeps its start)
    except for ``:end`` marks, where the last does."""
    out: dict[str, float] = {"exec": 0.0}
    for line in lines:
        record = json.loads(line)
        step, at = str(record["step"]), float(record["t"]) - started_wall
        if step not in out or step.endswith(":end"):
            out[step] = at
    out["ended"] = wall
    return out


def measure(work: Path, days: int, rows_per_day: int, repeats: int) -> list[Step]:
    end = (START + timedelta(days=days - 1)).isoformat()
    py = sys.executable
    backfill = str(Path(py).parent / "backfill")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PREFECT_", "PYTHONPYCACHE"))}
    base |= {
        "BACKFILL_CACHE_DIR": str(ROOT / ".cache"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PYTHONDONTWRITEBYTECODE": "1",  # as on this machine: only what `make` compiled is there
    }
    no_bytecode = {"PYTHONPYCACHEPREFIX": str(work / "no-bytecode")}
    window = ["--start", START.isoformat(), "--end", end, "--yes"]
    steps = {
        name: Step(name)
        for name in (
            "one Spark job over the same rows (read all, overwrite all)",
            "`backfill run`, fresh PREFECT_HOME, fresh target",
            "`backfill run`, warm PREFECT_HOME, fresh target",
            "`backfill run --reprocess all`, warm PREFECT_HOME (every partition rewritten, diffed with its old rows)",
            "`backfill run` again: nothing to do",
            "`backfill run` again: nothing to do, without bytecode",
            "`backfill status`",
            "`backfill plan`",
            "`backfill --help`",
            "`backfill --help`, without bytecode",
        )
    }
    one, fresh, warm, rewrite, again, again_cold, status, plan, help_, help_cold = steps.values()
    for i in range(repeats):
        lake = work / f"lake-{i}"
        env = {**base, "BACKFILL_DEMO_LAKE": str(lake), "PREFECT_HOME": str(work / f"prefect-{i}")}
        env["BACKFILL_RESULT_STORAGE_PATH"] = str(lake / "results")
        subprocess.run([py, "-c", GENERATE, str(lake / "bronze" / "orders"), START.isoformat(), end, str(rows_per_day)],
                       env=env, cwd=ROOT, check=True, capture_output=True)  # fmt: skip
        _time(one, [py, "-c", ONE_JOB, str(lake / "bronze" / "orders"), str(lake / "one_job" / "orders")], env)
        _time(fresh, [backfill, "run", "demo_orders", *window], env)
        # The same work as the first run (a new target, its ledger and cache records gone), Prefect's home kept.
        for written in ("silver", "results"):
            shutil.rmtree(lake / written)
        _time(warm, [backfill, "run", "demo_orders", *window], env)
        _time(rewrite, [backfill, "run", "demo_orders", *window, "--reprocess", "all"], env)
        _time(again, [backfill, "run", "demo_orders", *window], env)
        _time(again_cold, [backfill, "run", "demo_orders", *window], env | no_bytecode)
        _time(status, [backfill, "status", "demo_orders"], env)
        _time(plan, [backfill, "plan", "demo_orders", *window], env)
        _time(help_, [backfill, "--help"], env)
        _time(help_cold, [backfill, "--help"], env | no_bytecode)
    return list(steps.values())


def page(steps: list[Step], days: int, rows_per_day: int, repeats: int) -> str:
    baseline = statistics.median(steps[0].walls)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# Fixed cost: whole commands",
        "",
        f"Measured {when} on this 2-core machine by `python -m bench.fixed_cost` ({days} days x {rows_per_day:,} "
        f"rows of the demo's bronze orders on local disk, {repeats} repeat(s), each on a fresh lake). Every step is "
        "a whole process from exec to exit, as a user waits for it; ratios are to the one Spark job's process. "
        "Load is the 1-minute load average before the step (the highest over the repeats).",
        "",
        "| command | median s | range s | vs one job | load |",
        "|---|---|---|---|---|",
        *(step.row(baseline) for step in steps),
        "",
        *targets(steps),
        "",
        "## Where a `backfill run`'s time goes",
        "",
        "Each phase's start and end in seconds after the process was started, and its length (medians over the "
        "repeats; `–`: the phase did not happen). Phases in the same band overlap: the CLI starts Spark and checks "
        "the target in a thread while Prefect's embedded server starts, then waits for both.",
        "",
        *breakdown(steps[1:5]),
    ]
    return "\n".join(lines) + "\n"


#: (label, start mark, end mark) of the breakdown, in the order they happen.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("interpreter start and the CLI's imports", "exec", "main"),
    ("arguments parsed, the run command's imports", "main", "prepare:start"),
    ("prepare: settings, pipeline, ledger, both tables' logs, the plan", "prepare:start", "prepare:end"),
    ("plan printed, embedded server spawned", "prepare:end", "server spawn:end"),
    ("  (thread) Spark's start", "Spark start:start", "Spark start:end"),
    ("  (thread) Spark's start and the target checked or created", "warm-up: Spark and the target:start",
     "warm-up: Spark and the target:end"),
    ("waiting for the embedded server to answer", "server wait:start", "server wait:end"),
    ("then waiting for the warm-up thread", "warm-up wait:start", "warm-up wait:end"),
    ("the flow's module loaded", "load flow:start", "load flow:end"),
    ("Prefect starts the flow run (call to the flow's first line)", "flow call:start", "flow body"),
    ("flow: target checked, cache records, claims", "flow body", "chunks"),
    ("flow: the chunks (Spark jobs, commits, ledger)", "chunks", "artifacts"),
    ("flow: summary, run event, artifacts; Prefect ends the flow run", "artifacts", "flow call:end"),
    ("summary printed", "summary:start", "summary:end"),
    ("from the summary to the exit code", "summary:end", "exit"),
    ("teardown: Spark's JVM and the server stopped, interpreter exit", "exit", "ended"),
    ("whole process", "exec", "ended"),
)  # fmt: skip


def _median_of(step: Step, mark: str) -> float | None:
    values = [t[mark] for t in step.timelines if mark in t]
    return statistics.median(values) if len(values) == len(step.timelines) and values else None


def breakdown(steps: list[Step]) -> list[str]:
    """One table per command: the phases of :data:`PHASES` its marks show."""
    out: list[str] = []
    for step in steps:
        out += [f"### {step.name}", "", "| phase | from s | to s | takes s |", "|---|---|---|---|"]
        for label, first, last in PHASES:
            begin, end = _median_of(step, first), _median_of(step, last)
            if begin is None or end is None:
                continue
            out.append(f"| {label} | {begin:.2f} | {end:.2f} | {end - begin:.2f} |")
        out.append("")
    return out


#: (step name prefix, limit, what) of the issue's targets: ratios to the one job, or seconds.
TARGETS: tuple[tuple[str, float, str], ...] = (
    ("`backfill run`, warm PREFECT_HOME, fresh target", 1.2, "ratio"),
    ("`backfill run`, fresh", 1.5, "ratio"),
    ("`backfill run` again: nothing to do", 3.0, "s"),
    ("`backfill status`", 2.0, "s"),
    ("`backfill --help`", 0.7, "s"),
)


def targets(steps: list[Step]) -> list[str]:
    """PASS/FAIL against the issue's targets (medians; the seconds targets are for an idle machine)."""
    baseline = statistics.median(steps[0].walls)
    out = ["| target | threshold | measured (median) | result |", "|---|---|---|---|"]
    for prefix, limit, kind in TARGETS:
        step = next(s for s in steps if s.name.startswith(prefix))
        mid = statistics.median(step.walls)
        value, threshold = (mid / baseline, f"≤ {limit}× the one job") if kind == "ratio" else (mid, f"≤ {limit} s")
        shown = f"{value:.2f}×" if kind == "ratio" else f"{value:.2f} s"
        out.append(f"| {step.name} | {threshold} | {shown} | {'PASS' if value <= limit else 'FAIL'} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fixed_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=182)
    parser.add_argument("--rows-per-day", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-fixed-"))
    steps = measure(work, options.days, options.rows_per_day, options.repeats)
    text = page(steps, options.days, options.rows_per_day, options.repeats)
    print(text)
    if not options.no_write:
        (ROOT / "docs" / "fixed-cost-benchmarks.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
