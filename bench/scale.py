"""The scale benchmark: ``.venv/bin/python bench/scale.py [--quick]`` (``make bench-scale``).

Four questions, each measurement in its own subprocess (fresh interpreter, fresh Prefect database copy,
fresh data folder), with the peak RSS of its process tree sampled from here:

1. ``cap``: what the shared cap (one global concurrency limit held for the whole run) costs against a
   bare thread pool, and what a limit acquired per partition would cost instead;
2. ``orch``: orchestration cost per partition: plain loop vs the flow on a thread pool, on Dask, in chunks;
3. ``speedup``: speedup vs max_concurrency 1/2/4/8 for I/O-bound (sleeping) and real Spark + Delta partitions;
4. ``hourly``: 43,848 hourly partitions (5 years): plan, run in chunks, plan again, resume.

Runs meant to measure a Prefect task run *per partition* (cap, orch thread/Dask, speedup) pass
``chunk_partitions=1``; the chunked runs (orch ``chunked``, hourly) keep the defaults.

Writes ``bench/out/scale.json``, ``docs/scale-benchmarks.md`` and ``docs/scale-benchmarks.png``. The
measurements run one after another, never two at once: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (bench/scale.py): make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench.monitor import TreeMonitor, kill_tree  # noqa: E402
from bench.run import JAVA_HOME, machine_info  # noqa: E402
from bench.scale_report import render_markdown, render_plot  # noqa: E402

OUT = ROOT / "bench" / "out" / "scale"
RESULTS = ROOT / "bench" / "out" / "scale.json"
DOCS = ROOT / "docs" / "scale-benchmarks.md"
PLOT = ROOT / "docs" / "scale-benchmarks.png"
BRONZE = OUT / "bronze" / "orders"
PREFECT_TEMPLATE = OUT / "prefect-template"
PREFECT_HOMES = OUT / "prefect-homes"
LOGS = OUT / "logs"
START = "2024-01-01"
GROUPS = ("cap", "orch", "speedup", "hourly")


@dataclass(frozen=True)
class Params:
    """Sizes of every scenario; ``--quick`` shrinks them all (a smoke run, not a measurement)."""

    cap_partitions: int = 180
    cap_seconds: float = 0.2
    cap_repeats: int = 3
    per_partition_partitions: int = 180
    orch_partitions: int = 200
    io_partitions: int = 64
    io_seconds: float = 0.5
    concurrencies: tuple[int, ...] = (1, 2, 4, 8)
    spark_days: int = 16
    spark_concurrencies: tuple[int, ...] = (1, 2, 4, 8)
    spark_repeats: int = 2
    bronze_days: int = 16
    bronze_rows_per_day: int = 2_000
    hour_start: str = "2020-01-01"
    hour_end: str = "2024-12-31"
    hour_chunk_partitions: int = 400  # the default

    @classmethod
    def quick(cls) -> Params:
        return cls(
            cap_partitions=20,
            cap_repeats=1,
            per_partition_partitions=8,
            orch_partitions=20,
            io_partitions=8,
            io_seconds=0.2,
            spark_days=4,
            spark_concurrencies=(1, 2),
            spark_repeats=1,
            hour_end="2020-01-31",
            hour_chunk_partitions=100,
        )


@dataclass(frozen=True)
class Run:
    """One measured subprocess: ``python -m bench.scale_scenarios ARGV`` with ``env`` on top of the base."""

    name: str
    group: str
    label: str
    argv: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    folder: str | None = None  # data folder under OUT (default: the run's name); shared folders are not wiped
    fresh: bool = True
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def data_folder(self) -> Path:
        return OUT / (self.folder or self.name)


def end_of(start: str, days: int) -> str:
    return (date.fromisoformat(start) + timedelta(days=days - 1)).isoformat()


def sleep_env(seconds: float, **extra: str) -> dict[str, str]:
    return {"BACKFILL_ENGINE": "prefect_backfill.testing:SleepEngine", "BENCH_PARTITION_SECONDS": str(seconds), **extra}


def flow_argv(pipeline: str, start: str, end: str, concurrency: int, chunk: int = 1, *more: str) -> tuple[str, ...]:
    """A ``flow`` measurement; ``chunk`` is the flow's ``chunk_partitions`` (1: a task run per partition)."""
    return (
        "flow",
        "--pipeline",
        pipeline,
        "--start",
        start,
        "--end",
        end,
        "--concurrency",
        str(concurrency),
        "--chunk-partitions",
        str(chunk),
        *more,
    )


def plan_runs(p: Params) -> list[Run]:
    """Every measurement, in run order. Cap variants alternate so that drift in the machine's load
    hits both alike; the hourly steps share one data folder (plan → run → plan → resume)."""
    runs: list[Run] = []

    # 1. The shared cap's cost.
    cap_end = end_of(START, p.cap_partitions)
    cap_meta = {"partitions": p.cap_partitions, "seconds": p.cap_seconds, "concurrency": 2}
    for i in range(1, p.cap_repeats + 1):
        runs.append(
            Run(
                f"cap_bare_{i}",
                "cap",
                "bare thread pool (BACKFILL_COORDINATE=false)",
                flow_argv("bench_noop_day", START, cap_end, 2),
                sleep_env(p.cap_seconds, BACKFILL_COORDINATE="false"),
                meta={**cap_meta, "variant": "bare", "repeat": i},
            )
        )
        runs.append(
            Run(
                f"cap_shared_{i}",
                "cap",
                "shared cap (default: one limit held for the run)",
                (*flow_argv("bench_noop_day", START, cap_end, 2), "--trace-coordination"),
                sleep_env(p.cap_seconds, BACKFILL_COORDINATE="true"),
                meta={**cap_meta, "variant": "shared", "repeat": i},
            )
        )
    runs.append(
        Run(
            "cap_per_partition",
            "cap",
            "anti-pattern: a global limit (2) acquired per partition",
            flow_argv("bench_noop_day", START, end_of(START, p.per_partition_partitions), 2),
            {
                "BACKFILL_ENGINE": "prefect_backfill.testing:PerPartitionLimitEngine",
                "BENCH_PARTITION_SECONDS": str(p.cap_seconds),
                "BENCH_PER_PARTITION_LIMIT": "2",
                "BACKFILL_COORDINATE": "false",
            },
            meta={**cap_meta, "partitions": p.per_partition_partitions, "variant": "per_partition", "repeat": 1},
        )
    )

    # 2. Orchestration cost per partition (no-op partitions).
    n = p.orch_partitions
    orch_end = end_of(START, n)
    loop = ("loop", "--pipeline", "bench_noop_day", "--start", START, "--end", orch_end)
    runs.append(
        Run(
            "orch_loop_engine",
            "orch",
            "plain loop: engine call alone",
            loop,
            sleep_env(0),
            meta={"kind": "loop_engine", "partitions": n},
        )
    )
    runs.append(
        Run(
            "orch_loop_ledger",
            "orch",
            "plain loop: engine + the task's ledger appends",
            (*loop, "--ledger"),
            sleep_env(0),
            meta={"kind": "loop_ledger", "partitions": n},
        )
    )
    dask_env = {"BACKFILL_TASK_RUNNER": "dask", "BACKFILL_DASK_WORKERS": "2"}
    flows = [
        ("thread", "flow, thread pool, chunk_partitions 1, max_concurrency 2", 1, {}),
        ("chunked", "flow, thread pool, default chunks, max_concurrency 2", 400, {}),
        ("dask", "flow, Dask (2 worker processes), chunk_partitions 1, max_concurrency 2", 1, dask_env),
    ]
    for kind, label, chunk, extra in flows:
        for size in (1, n):
            runs.append(
                Run(
                    f"orch_{kind}_{size}",
                    "orch",
                    f"{label}, {size} partition(s)",
                    flow_argv("bench_noop_day", START, end_of(START, size), 2, chunk),
                    sleep_env(0, **extra),
                    meta={"kind": kind, "partitions": size},
                )
            )

    # 3. Speedup vs concurrency: I/O-bound (sleep) and Spark + Delta.
    io_end = end_of(START, p.io_partitions)
    for c in p.concurrencies:
        runs.append(
            Run(
                f"speedup_io_c{c}",
                "speedup",
                f"I/O-bound ({p.io_seconds} s sleep), max_concurrency {c}",
                flow_argv("bench_noop_day", START, io_end, c),
                sleep_env(p.io_seconds, BACKFILL_COORDINATE="false"),
                meta={"kind": "io", "concurrency": c, "partitions": p.io_partitions, "seconds": p.io_seconds},
            )
        )
    spark_end = end_of(START, p.spark_days)
    for i in range(1, p.spark_repeats + 1):  # repeats go round all levels in turn: drift hits each alike
        for c in p.spark_concurrencies:
            runs.append(
                Run(
                    f"speedup_spark_c{c}" + (f"_r{i}" if i > 1 else ""),
                    "speedup",
                    f"Spark + Delta (bench_orders), max_concurrency {c}",
                    (*flow_argv("bench_orders", START, spark_end, c), "--warm-spark"),
                    {"BACKFILL_COORDINATE": "false"},
                    meta={"kind": "spark", "concurrency": c, "partitions": p.spark_days, "repeat": i},
                )
            )

    # 4. 43,848 hourly partitions: one data folder, four steps in order.
    hour = ("--pipeline", "bench_noop_hour", "--start", p.hour_start, "--end", p.hour_end)
    runs += [
        Run("hourly_plan_empty", "hourly", "plan, empty ledger", ("plan", *hour), sleep_env(0), "hourly"),
        Run(
            "hourly_run",
            "hourly",
            f"run, chunk_partitions {p.hour_chunk_partitions}, max_concurrency 2",
            flow_argv("bench_noop_hour", p.hour_start, p.hour_end, 2, p.hour_chunk_partitions),
            sleep_env(0),
            "hourly",
            fresh=False,
        ),
        Run("hourly_plan_full", "hourly", "plan again, all complete", ("plan", *hour), sleep_env(0), "hourly", False),
        Run(
            "hourly_resume",
            "hourly",
            "resume: the same flow call again",
            flow_argv("bench_noop_hour", p.hour_start, p.hour_end, 2, p.hour_chunk_partitions),
            sleep_env(0),
            "hourly",
            fresh=False,
        ),
    ]
    return runs


def base_env(data_folder: Path, prefect_home: Path) -> dict[str, str]:
    """The caller's environment minus every BACKFILL_*/PREFECT_*/BENCH_* (no PREFECT_API_URL sending runs
    to someone's server), plus the scenario's own folders, the bench pipelines and a Prefect home."""
    cache_dir = os.environ.get("BACKFILL_CACHE_DIR", str(ROOT / ".cache"))  # the jars: a worktree may share them
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PREFECT_", "BENCH_"))}
    env.update(
        JAVA_HOME=JAVA_HOME,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        BACKFILL_PIPELINE_MODULES="bench.pipelines,prefect_backfill.testing.pipelines",
        BACKFILL_CACHE_DIR=cache_dir,
        BACKFILL_DATA_DIR=str(data_folder / "data"),
        BACKFILL_RESULT_STORAGE_PATH=str(data_folder / "results"),
        BENCH_SOURCE_PATH=str(BRONZE),
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    return env


class CpuTreeMonitor(TreeMonitor):
    """The RSS monitor, also keeping each process's latest CPU seconds (user + system) as it samples: a JVM
    or server that its parent never reaps would be missing from ``getrusage(RUSAGE_CHILDREN)``."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(pid, interval)
        self.cpu: dict[tuple[int, float], float] = {}

    def sample(self) -> None:
        super().sample()
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                self.cpu[(proc.pid, proc.create_time())] = times.user + times.system

    @property
    def tree_cpu_s(self) -> float:
        return sum(self.cpu.values())


def _machine_cpu() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, stolen seconds, CPU seconds of this very process)."""
    t = psutil.cpu_times()
    own = resource.getrusage(resource.RUSAGE_SELF)
    return t.user + t.nice + t.system + t.irq + t.softirq, getattr(t, "steal", 0.0), own.ru_utime + own.ru_stime


def wait_for_quiet(max_wait: float, threshold: float) -> tuple[float, float]:
    """Wait (at most ``max_wait`` s) until the machine's CPU use, with nothing of ours running, is below
    ``threshold`` % over 5 s: other engineers' test runs share the 2 cores. Returns (waited s, last CPU %)."""
    started = time.perf_counter()
    busy = psutil.cpu_percent(interval=2.0)
    while busy >= threshold and time.perf_counter() - started < max_wait:
        busy = psutil.cpu_percent(interval=5.0)
    return time.perf_counter() - started, busy


QUIET = {"max_wait": 0.0, "threshold": 25.0}  # set from the command line in main()
NOISY_CPU_PCT = 25.0  # other processes' CPU during a measurement above which it is measured again


def measure(name: str, argv: tuple[str, ...], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run one scenario process under the RSS monitor; its own JSON plus wall time, peak RSS and the CPU
    that other processes used meanwhile (whole machine minus this process tree: approximate)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    result_file = OUT / "results" / f"{name}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    log = LOGS / f"{name}.log"
    command = [sys.executable, "-m", "bench.scale_scenarios", *argv, "--out", str(result_file)]
    waited, cpu_before = wait_for_quiet(QUIET["max_wait"], QUIET["threshold"]) if QUIET["max_wait"] else (0.0, -1.0)
    load_before = os.getloadavg()[0]
    print(f"[scale] {name}: {shlex.join(argv)}", flush=True)
    busy0, steal0, own0 = _machine_cpu()
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        monitor = CpuTreeMonitor(proc.pid)
        monitor.start()
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            returncode = None
        wall = time.perf_counter() - started
        peak = monitor.stop()
    busy1, steal1, own1 = _machine_cpu()
    capacity = wall * (os.cpu_count() or 1)
    ours = monitor.tree_cpu_s + (own1 - own0)
    others = max(0.0, (busy1 - busy0) - ours) / capacity * 100
    if result_file.exists():
        data: dict[str, Any] = json.loads(result_file.read_text())
    else:
        data = {"ok": False, "error": f"no result ({'timed out' if returncode is None else 'crashed'}); see {log}"}
    data.update(
        wall_s=wall,
        returncode=returncode,
        log=str(log.relative_to(ROOT)),
        load_before=round(load_before, 2),
        waited_for_quiet_s=round(waited, 1),
        cpu_before_pct=round(cpu_before, 1),
        tree_cpu_s=round(monitor.tree_cpu_s, 1),
        others_cpu_pct=round(others, 1),
        steal_pct=round((steal1 - steal0) / capacity * 100, 1),
        peak_rss_mib=round(peak.total_mib, 1),
        peak_breakdown_mib={k: round(v, 1) for k, v in sorted(peak.at_peak_mib.items())},
        max_processes=peak.max_processes,
    )
    ok = data.get("ok", True) and returncode == 0
    shown = data.get("duration_s", data.get("plan_s", data.get("call_s")))
    flow = f"{shown:.2f} s" if isinstance(shown, int | float) else "-"
    print(
        f"[scale] {name}: {'ok' if ok else 'FAILED'}, measured {flow}, wall {wall:.1f} s, "
        f"peak RSS {peak.total_mib:.0f} MiB, others' CPU {others:.0f}% (waited {waited:.0f} s)"
        + ("" if ok else f"  {data.get('error')}"),
        flush=True,
    )
    return data


def warm_prefect(timeout: float) -> dict[str, Any]:
    """A fresh Prefect database, migrated once; every measurement starts from a copy of it."""
    shutil.rmtree(PREFECT_TEMPLATE, ignore_errors=True)
    shutil.rmtree(PREFECT_HOMES, ignore_errors=True)
    result = measure("warmup", ("warmup",), base_env(OUT / "warmup", PREFECT_TEMPLATE), timeout)
    if result.get("returncode") != 0:
        raise SystemExit(f"the Prefect warm-up failed: {result.get('error')} (see {result['log']})")
    return result


def prepare_bronze(p: Params, timeout: float) -> dict[str, Any]:
    """The Spark scenario's bronze table (16 days × 2,000 rows), generated once in its own process."""
    marker = BRONZE.parent / "params.json"
    wanted = {"start": START, "days": p.bronze_days, "rows_per_day": p.bronze_rows_per_day}
    if marker.exists() and (BRONZE / "_delta_log").is_dir() and json.loads(marker.read_text()) == wanted:
        print(f"[scale] bronze: reusing {BRONZE.relative_to(ROOT)}", flush=True)
        return {"reused": True, **wanted}
    shutil.rmtree(BRONZE.parent, ignore_errors=True)
    argv = ("generate", "--start", START, "--end", end_of(START, p.bronze_days), "--path", str(BRONZE))
    home = PREFECT_HOMES / "generate"
    shutil.copytree(PREFECT_TEMPLATE, home, dirs_exist_ok=True)
    result = measure(
        "generate", (*argv, "--rows-per-day", str(p.bronze_rows_per_day)), base_env(OUT / "gen", home), timeout
    )
    if result.get("returncode") != 0:
        raise SystemExit(f"bronze generation failed: {result.get('error')} (see {result['log']})")
    marker.write_text(json.dumps(wanted))
    return {"reused": False, **wanted, **result}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefect-backfill scale benchmark (see docs/scale-benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="shrink everything: a smoke run (~10 min here)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated groups ({', '.join(GROUPS)}) or run names to (re)run; the other runs are kept "
        "from scale.json",
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per measurement before it is killed")
    parser.add_argument("--no-docs", action="store_true", help="write scale.json only, not the docs")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="before each measurement wait up to this many seconds for the machine to be quiet "
        "(default 600, --quick 30; 0: never wait)",
    )
    parser.add_argument("--quiet-cpu", type=float, default=25.0, help="'quiet' = machine CPU use below this %%")
    parser.add_argument(
        "--retry-noisy",
        type=int,
        default=None,
        help=f"measure again (this many times) when other processes used over {NOISY_CPU_PCT:.0f}%% CPU meanwhile; "
        "the least disturbed attempt counts (default 1, --quick 0; not for the chained hourly steps)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "bench/scale.py", *(argv or sys.argv[1:])])
    params = Params.quick() if args.quick else Params()
    QUIET.update(max_wait=args.max_wait if args.max_wait is not None else 30.0 if args.quick else 600.0)
    QUIET.update(threshold=args.quiet_cpu)
    plan = plan_runs(params)
    wanted = {g.strip() for g in args.only.split(",") if g.strip()}
    if unknown := wanted - set(GROUPS) - {r.name for r in plan}:
        raise SystemExit(f"unknown group(s)/run(s) {', '.join(sorted(unknown))}: groups are {', '.join(GROUPS)}")
    if any(r.group == "hourly" and r.name in wanted for r in plan):
        wanted.add("hourly")  # the hourly steps build on each other: always the whole chain
    selected = [r for r in plan if not wanted or r.group in wanted or r.name in wanted]

    previous: dict[str, Any] = {}
    if len(selected) < len(plan) and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        if previous.get("params", {}).get("quick") != args.quick:
            raise SystemExit("--only: the earlier scale.json was made with a different --quick setting")
    elif len(selected) < len(plan):
        print(f"[scale] no earlier {RESULTS.relative_to(ROOT)}: the docs will show only these groups", flush=True)

    started_at, t0 = datetime.now(UTC), time.perf_counter()
    machine = machine_info()
    OUT.mkdir(parents=True, exist_ok=True)
    warmup = warm_prefect(args.timeout)
    needs_bronze = any(r.meta.get("kind") == "spark" for r in selected)
    bronze = prepare_bronze(params, args.timeout) if needs_bronze else previous.get("bronze", {})

    names = {r.name for r in selected}
    runs: dict[str, dict[str, Any]] = {n: r for n, r in previous.get("runs", {}).items() if n not in names}
    retries = args.retry_noisy if args.retry_noisy is not None else 0 if args.quick else 1
    for run in selected:
        attempts: list[dict[str, Any]] = []
        for attempt in range(1 + (retries if run.fresh else 0)):
            if run.fresh:
                shutil.rmtree(run.data_folder, ignore_errors=True)
            home = PREFECT_HOMES / run.name
            shutil.rmtree(home, ignore_errors=True)
            shutil.copytree(PREFECT_TEMPLATE, home)
            env = {**base_env(run.data_folder, home), **run.env}
            result = measure(run.name, run.argv, env, args.timeout)
            result["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            attempts.append(result)
            if result.get("others_cpu_pct", 0.0) <= NOISY_CPU_PCT:
                break
            if attempt < retries and run.fresh:
                print(
                    f"[scale] {run.name}: others used {result['others_cpu_pct']:.0f}% CPU: measuring again", flush=True
                )
        best = min(attempts, key=lambda r: r.get("others_cpu_pct", 0.0))
        if len(attempts) > 1:
            best["noisy_attempts"] = [
                {k: a.get(k) for k in ("others_cpu_pct", "duration_s", "plan_s", "call_s", "wall_s", "measured_at")}
                for a in attempts
                if a is not best
            ]
        runs[run.name] = {"group": run.group, "label": run.label, "env": run.env, **run.meta, **best}

    machine["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict[str, Any] = {
        "command": command,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_s": time.perf_counter() - t0,
        "machine": machine,
        "params": {**params.__dict__, "quick": args.quick, "quiet": dict(QUIET)},
        "sessions": [
            *previous.get("sessions", []),
            {
                "command": command,
                "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
                "elapsed_s": round(time.perf_counter() - t0, 1),
                "runs": sorted(names),
            },
        ],
        "warmup": warmup,
        "bronze": bronze,
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"[scale] wrote {RESULTS.relative_to(ROOT)} in {results['elapsed_s']:.0f} s", flush=True)
    if not args.no_docs:
        render_plot(results, PLOT)
        DOCS.write_text(render_markdown(results, PLOT.name))
        print(f"[scale] wrote {DOCS.relative_to(ROOT)} and {PLOT.relative_to(ROOT)}", flush=True)
    failed = [name for name, r in runs.items() if not (r.get("ok", True) and r.get("returncode") == 0)]
    if failed:
        print(f"[scale] failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
