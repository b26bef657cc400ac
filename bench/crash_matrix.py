"""The crash matrix: ``.venv/bin/python bench/crash_matrix.py [--trials 30] [--seed N]``.

The harness of ``tests/e2e/test_crash_recovery.py`` (``tests/e2e/crash_harness.py``), longer: many trials
on one lake, each rewriting bronze, SIGKILLing a plain ``backfill run`` (CLI + embedded Prefect server +
Spark JVM, one process group) at a seeded random point of a phase (start-up, mid-partition, between
partitions, in a ledger commit), then running the same command again and checking exit code, ledger and
silver. Prints one line per trial as it ends, the problems of failed trials, and ``N passed, M failed``;
exits 1 if any trial failed.

``--control`` is not a test of the fix: it bumps the pipeline's version with each bronze content and turns
run coordination off, which is what the fix must achieve by itself; it shows that the harness passes when
recovery works, and measures the matrix's wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `tests` importable
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("BACKFILL_CACHE_DIR", str(ROOT / ".cache"))
os.environ.setdefault("JAVA_HOME", "/usr/lib/jvm/java-17-openjdk-amd64")

from tests.e2e.crash_harness import (  # noqa: E402
    RUN_TIMEOUT_S,
    CrashLake,
    TrialResult,
    plan_trials,
    run_slot_leak,
    run_trial,
    stop_all,
)

OUT = ROOT / "bench" / "out" / "crash-matrix"
HEADER = f"{'trial':>5}  {'phase':<13} {'kill point':<22} {'kill at':>7}  {'ledger showed':<21} {'rerun exit':>10} "
HEADER += f"{'rerun s':>7} {'trial s':>7}  ok"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="kill -9 the backfill CLI at random points; a plain rerun must repair")
    add = parser.add_argument
    add("--trials", type=int, default=30, help="number of kill + rerun trials (default 30)")
    add("--seed", type=int, default=20261126, help="kill points and bronze contents (default fixed)")
    add("--days", type=int, default=10, help="daily partitions in the range (default 10)")
    add("--sleep", type=float, default=0.7, help="seconds the transform sleeps per partition")
    add("--max-concurrency", type=int, default=2, help="the CLI's --max-concurrency (default 2)")
    add("--timeout", type=float, default=RUN_TIMEOUT_S, help="seconds before a run counts as hung")
    add("--slot-leak", action="store_true", help="also: two kills in a row, then a plain run")
    add("--control", action="store_true", help="version bump + no coordination (see the docstring)")
    add(
        "--cli-arg",
        action="append",
        default=[],
        help="appended to every run's command, killed or not (repeatable; e.g. --cli-arg=--chunk-partitions=1 "
        "for one partition per Spark job where runs pack partitions into chunks)",
    )
    add("--workdir", type=Path, default=None, help=f"the lake (default: a new folder under {OUT})")
    add("--keep", action="store_true", help="keep the lake (logs, tables) even when all passed")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.days < args.max_concurrency + 2:
        parser.error("need --trials >= 1 and --days >= --max-concurrency + 2 (room to kill between partitions)")
    return args


def row(index: str, result: TrialResult) -> str:
    kill, ok = result.kills[-1], "ok" if result.ok else "FAIL"
    at = f"{kill.at_s:.1f}s" if kill.killed else "-"
    observed = (kill.observed + (" +orphan" if kill.orphans else "")) if kill.killed else "not killed"
    code = "hung" if result.rerun_exit is None else str(result.rerun_exit)
    where = f"{index:>5}  {kill.point.phase:<13} {kill.point.describe():<22} {at:>7}"
    return f"{where}  {observed:<21} {code:>10} {result.rerun_s:>7.1f} {result.wall_s:>7.1f}  {ok}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or OUT / datetime.now().strftime("%Y%m%d-%H%M%S")
    options = {"days": args.days, "sleep_s": args.sleep, "max_concurrency": args.max_concurrency}
    lake = CrashLake(workdir, **options, control=args.control, extra_args=tuple(args.cli_arg))
    trials = plan_trials(args.seed, args.trials, args.days, args.max_concurrency)
    mode = " (control: version bump, no coordination)" if args.control else ""
    print(
        f"crash matrix{mode}: {args.trials} trials, seed {args.seed}, {args.days} days, sleep {args.sleep}s, "
        f"max-concurrency {args.max_concurrency}, lake {workdir}\ncommand: {' '.join(lake.command)}",
        flush=True,
    )
    print(HEADER, flush=True)
    started = time.monotonic()
    results: list[TrialResult] = []
    interrupted: BaseException | None = None
    try:
        for trial in trials:
            result = run_trial(lake, trial, timeout=args.timeout)
            results.append(result)
            print(row(str(trial.index), result), flush=True)
        if args.slot_leak:
            result = run_slot_leak(lake, args.seed, timeout=args.timeout)
            results.append(result)
            print(row("leak", result), flush=True)
    except (KeyboardInterrupt, SystemExit) as exc:  # Ctrl-C, SIGTERM: stop the running CLI, report so far
        stop_all()
        interrupted = exc
    wall = time.monotonic() - started

    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"\n{result.report()}")
    if interrupted is not None:
        print(f"\ninterrupted after {len(results)} of {len(trials) + args.slot_leak} trials")
        if not results:
            return 130
    startup = f"{statistics.median(lake.startup_s):.1f}s" if lake.startup_s else "n/a"
    reruns = [r.rerun_s for r in results if r.rerun_exit is not None]
    print(
        f"\nwall time {wall:.0f}s ({wall / len(results):.0f}s per trial); start → first ledger event, median "
        f"{startup}; rerun median {statistics.median(reruns) if reruns else float('nan'):.1f}s; logs in "
        f"{workdir / 'logs'}"
    )
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if interrupted is not None:
        return 130
    if not failed and not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds like Ctrl-C: the running CLI is stopped, results so far printed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        sys.exit(main())
    finally:
        stop_all()  # each CLI runs in its own session: Ctrl-C does not reach it
