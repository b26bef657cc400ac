"""The benchmark: ``.venv/bin/python bench/run.py [--quick] [--only GROUPS_OR_NAMES]``.

Runs every scenario in its own subprocess (a fresh JVM each, so peak RSS is comparable), samples the RSS
of each process tree from here, and writes ``bench/out/results.json`` and ``docs/benchmarks.md`` with
PASS/FAIL against the acceptance targets. Scenarios run one after another: on a 2-core machine anything
in parallel would distort every number; before each one the harness waits (``--max-load``,
``--max-wait``) for the 1-minute load average to fall, and records the load around it.

Groups (``--only demo,big,budget,hourly,profile`` or scenario names; the other scenarios' numbers are kept
from the previous ``results.json``):

- ``demo``: 182 days × 2,000 rows (``make bench`` data): the seed port, the package at default settings,
  its resume, the package with one partition per job, the read-all/overwrite-all job, a 30-day run;
- ``big``: days of ~4 MB of source against a 1 MB budget: chunked vs one partition per job;
- ``budget``: 1 GB of wide source backfilled with byte budgets of 1 … 512 MB;
- ``hourly``: one year of real hourly partitions (8,784) planned, run and resumed with the real CLI;
- ``profile``: the fixed cost of one small chunk, step by step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script (bench/run.py): make the `bench` package importable
    sys.path.insert(0, str(ROOT))

from bench.monitor import TreeMonitor, kill_tree  # noqa: E402
from bench.report import evaluate, render_markdown  # noqa: E402
from bench.scenarios import START, end_of  # noqa: E402

OUT = ROOT / "bench" / "out"
BRONZE = OUT / "bronze" / "orders"
WIDE = OUT / "bronze_wide" / "orders"
HOURLY = OUT / "bronze_hourly" / "events"
PREFECT_HOME = OUT / "prefect"
LOGS = OUT / "logs"
RESULTS = OUT / "results.json"
DOCS = ROOT / "docs" / "benchmarks.md"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
GROUPS = ("demo", "big", "budget", "hourly", "profile")


@dataclass(frozen=True)
class Params:
    """Sizes of every scenario; ``--quick`` shrinks them all (a smoke run of the harness, not a measurement)."""

    days: int = 182
    rows_per_day: int = 2_000
    small_days: int = 30
    wide_days: int = 256
    wide_rows_per_day: int = 4_000
    payload_bytes: int = 1_024
    big_days: int = 30
    big_chunk_mb: float = 1.0
    big_repeats: int = 2  # extra runs of big_chunked and big_p1 (see scenarios())
    budgets: tuple[float, ...] = (1, 16, 64, 256, 512)
    hourly_start: str = "2024-01-01"
    hourly_end: str = "2024-12-31"
    profile_repeats: int = 20
    quick: bool = False

    @classmethod
    def quick_params(cls) -> Params:
        return cls(
            days=5,
            rows_per_day=200,
            small_days=2,
            wide_days=8,
            wide_rows_per_day=600,
            big_days=4,
            big_chunk_mb=0.1,
            big_repeats=1,
            budgets=(0.1, 1),
            hourly_end="2024-01-02",
            profile_repeats=4,
            quick=True,
        )


@dataclass(frozen=True)
class Scenario:
    """One measured process: ``python -m bench.scenarios KIND ARGV``. ``folder`` names whose data folder it
    uses (resume steps reuse their run's); ``bronze`` which shared source it needs."""

    name: str
    group: str
    kind: str
    label: str
    argv: tuple[str, ...] = ()
    bronze: str | None = "demo"
    folder: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def data_folder(self) -> Path:
        return OUT / (self.folder or self.name)


def _flow(
    start: str, end: str, concurrency: int = 2, pipeline: str = "bench_orders", **chunks: float
) -> tuple[str, ...]:
    argv = ["--pipeline", pipeline, "--start", start, "--end", end, "--concurrency", str(concurrency)]
    if "mb" in chunks:
        argv += ["--chunk-mb", f"{chunks['mb']:g}"]
    if "partitions" in chunks:
        argv += ["--chunk-partitions", str(int(chunks["partitions"]))]
    return tuple(argv)


def scenarios(p: Params) -> list[Scenario]:
    """All scenarios, in run order: a resume right after the run it resumes, the seed port last."""
    end = end_of(START, p.days)
    small_end = end_of(START, p.small_days)
    big_end = end_of(START, p.big_days)
    wide_end = end_of(START, p.wide_days)
    hours = f"bench_events_hourly --start {p.hourly_start}T00 --end {p.hourly_end}T23"
    meta = {"days": p.days}
    out = [
        Scenario(
            "package",
            "demo",
            "package",
            "package, defaults (max_concurrency 2, chunking on)",
            _flow(START, end),
            meta=meta,
        ),
        Scenario(
            "resume",
            "demo",
            "resume",
            "resume of `package` (new process)",
            _flow(START, end),
            folder="package",
            meta=meta,
        ),
        Scenario(
            "package_p1",
            "demo",
            "package",
            "package, chunk_partitions=1 (one partition per job)",
            _flow(START, end, partitions=1),
            meta=meta,
        ),
        Scenario(
            "package_cli",
            "demo",
            "cli",
            "`backfill run` (the CLI, embedded server), defaults",
            ("--cli", f"run bench_orders --start {START} --end {end}"),
            meta=meta,
        ),
        Scenario(
            "wrong", "demo", "wrong", "single job: read all, overwrite all", ("--start", START, "--end", end), meta=meta
        ),
        Scenario(
            "package_small",
            "demo",
            "package",
            f"package, defaults, {p.small_days} days",
            _flow(START, small_end),
            meta={"days": p.small_days},
        ),
    ]
    out += [
        Scenario(
            "hourly_plan",
            "hourly",
            "cli",
            "`backfill plan` (empty ledger)",
            ("--cli", f"plan {hours} --yes --json"),
            "hourly",
            "hourly",
        ),
        Scenario(
            "hourly_run",
            "hourly",
            "cli",
            "`backfill run` (defaults)",
            ("--cli", f"run {hours} --yes"),
            "hourly",
            "hourly",
        ),
        Scenario(
            "hourly_plan_done",
            "hourly",
            "cli",
            "`backfill plan` (all complete)",
            ("--cli", f"plan {hours} --yes --json"),
            "hourly",
            "hourly",
        ),
        Scenario(
            "hourly_resume",
            "hourly",
            "cli",
            "`backfill run` again (resume)",
            ("--cli", f"run {hours} --yes"),
            "hourly",
            "hourly",
        ),
        Scenario(
            "profile",
            "profile",
            "profile",
            "one small chunk, step by step (no Prefect)",
            ("--start", START, "--repeats", str(p.profile_repeats)),
        ),
    ]
    big = {"days": p.big_days, "chunk_mb": p.big_chunk_mb}
    out += [
        Scenario(
            "big_chunked",
            "big",
            "package",
            f"wide days, chunk_mb={p.big_chunk_mb:g} (chunking on)",
            _flow(START, big_end, pipeline="bench_wide", mb=p.big_chunk_mb),
            "wide",
            meta=big,
        ),
        Scenario(
            "big_p1",
            "big",
            "package",
            f"wide days, chunk_mb={p.big_chunk_mb:g}, chunk_partitions=1",
            _flow(START, big_end, pipeline="bench_wide", mb=p.big_chunk_mb, partitions=1),
            "wide",
            meta=big,
        ),
        Scenario(
            "big_default",
            "big",
            "package",
            "wide days, defaults (chunk_mb=256)",
            _flow(START, big_end, pipeline="bench_wide"),
            "wide",
            meta={"days": p.big_days, "chunk_mb": 256},
        ),
    ]
    # The two runs above execute the very same chunks (every day is over the budget), so one run each says
    # more about the machine than about chunking: two more of each, taking turns.
    for i in range(2, 2 + p.big_repeats):
        out += [
            Scenario(
                f"big_chunked_r{i}",
                "big",
                "package",
                f"as big_chunked (repeat {i})",
                _flow(START, big_end, pipeline="bench_wide", mb=p.big_chunk_mb),
                "wide",
                meta=big,
            ),
            Scenario(
                f"big_p1_r{i}",
                "big",
                "package",
                f"as big_p1 (repeat {i})",
                _flow(START, big_end, pipeline="bench_wide", mb=p.big_chunk_mb, partitions=1),
                "wide",
                meta=big,
            ),
        ]
    out += [
        Scenario(
            f"budget_{mb:g}",
            "budget",
            "package",
            f"wide, {p.wide_days} days, chunk_mb={mb:g}",
            _flow(START, wide_end, pipeline="bench_wide", mb=mb),
            "wide",
            meta={"days": p.wide_days, "chunk_mb": mb},
        )
        for mb in p.budgets
    ]
    out.append(
        Scenario(
            f"budget_{max(p.budgets):g}_c1",
            "budget",
            "package",
            f"wide, {p.wide_days} days, chunk_mb={max(p.budgets):g}, max_concurrency 1",
            _flow(START, wide_end, concurrency=1, pipeline="bench_wide", mb=max(p.budgets)),
            "wide",
            meta={"days": p.wide_days, "chunk_mb": max(p.budgets), "concurrency": 1},
        )
    )
    # The seed port last: it is the longest by far (~15 min) and its margin the widest.
    out.append(
        Scenario(
            "seed",
            "demo",
            "seed",
            "seed BackfillController port (sequential, MERGE/UPDATE)",
            ("--start", START, "--end", end),
            meta=meta,
        )
    )
    return out


def scenario_env(data_folder: Path) -> dict[str, str]:
    """The scenario's environment: its own data and result folders, the shared Prefect home and jar cache.

    Any BACKFILL_*/PREFECT_* of the caller's shell is dropped (a PREFECT_API_URL would send the runs to
    someone's server; a BACKFILL_LEDGER_PATH would share a ledger between scenarios).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PREFECT_", "BENCH_"))}
    env.update(
        JAVA_HOME=JAVA_HOME,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        BACKFILL_CACHE_DIR=os.environ.get("BACKFILL_CACHE_DIR", str(ROOT / ".cache")),
        BACKFILL_DATA_DIR=str(data_folder / "data"),
        BACKFILL_RESULT_STORAGE_PATH=str(data_folder / "results"),
        BACKFILL_PIPELINE_MODULES="bench.pipelines",
        BENCH_SOURCE_PATH=str(BRONZE),
        BENCH_WIDE_SOURCE_PATH=str(WIDE),
        BENCH_HOURLY_SOURCE_PATH=str(HOURLY),
        PREFECT_HOME=str(PREFECT_HOME),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return env


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def wait_for_load(max_load: float, max_wait: float) -> float:
    """Wait (at most ``max_wait`` s) until the 1-minute load average is below ``max_load``: other jobs share
    the 2 cores. Returns the seconds waited."""
    started = time.perf_counter()
    while os.getloadavg()[0] >= max_load and time.perf_counter() - started < max_wait:
        time.sleep(10)
    return time.perf_counter() - started


WAIT = {"max_load": 0.0, "max_wait": 0.0}  # set from the command line in main()


def run_process(name: str, argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``python -m bench.scenarios ARGV`` under the RSS monitor; merge its own JSON with wall time, RSS
    and the load average around it (after waiting for the machine to be quiet enough)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    result_file = OUT / f"{name}.json"
    result_file.unlink(missing_ok=True)
    log = LOGS / f"{name}.log"
    command = [sys.executable, "-m", "bench.scenarios", *argv, "--out", str(result_file)]
    waited = wait_for_load(WAIT["max_load"], WAIT["max_wait"]) if WAIT["max_wait"] else 0.0
    load_before = _load()
    print(f"[bench] {name}: {shlex.join(argv)} (load {load_before}, waited {waited:.0f} s)", flush=True)
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        monitor = TreeMonitor(proc.pid)
        monitor.start()
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            returncode = None
        wall = time.perf_counter() - started
        peak = monitor.stop()
    if result_file.exists():
        data: dict[str, Any] = json.loads(result_file.read_text())
    else:
        data = {"ok": False, "error": f"no result ({'timed out' if returncode is None else 'crashed'}); see {log}"}
    data.update(
        wall_s=wall,
        returncode=returncode,
        log=str(log.relative_to(ROOT)),
        load_before=load_before,
        load_after=_load(),
        waited_for_load_s=round(waited, 1),
        measured_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        **peak.as_dict(),
    )
    state = "ok" if data.get("ok", True) and returncode == 0 else "FAILED"
    print(
        f"[bench] {name}: {state} in {wall:.1f} s, measured {data.get('run_s', float('nan')):.1f} s, "
        f"peak RSS {peak.total_mib:.0f} MiB, load after {data['load_after']}"
        + ("" if state == "ok" else f"  {data.get('error')}"),
        flush=True,
    )
    return data


def prepare_bronze(kind: str, p: Params, timeout: float) -> dict[str, Any]:
    """Generate a shared bronze table (``demo``, ``wide`` or ``hourly``), or reuse it when an earlier run
    wrote the very same one."""
    if kind == "demo":
        path, end = BRONZE, end_of(START, p.days)
        wanted: dict[str, Any] = {"start": START, "days": p.days, "rows_per_day": p.rows_per_day}
        argv = ["generate", "--start", START, "--end", end, "--rows-per-day", str(p.rows_per_day)]
    elif kind == "wide":
        path, end = WIDE, end_of(START, p.wide_days)
        wanted = {"start": START, "days": p.wide_days, "rows_per_day": p.wide_rows_per_day, "payload": p.payload_bytes}
        argv = ["generate_wide", "--start", START, "--end", end, "--rows-per-day", str(p.wide_rows_per_day)]
        argv += ["--payload-bytes", str(p.payload_bytes)]
    else:
        path = HOURLY
        wanted = {"start": p.hourly_start, "end": p.hourly_end}
        argv = ["generate_hourly", "--start", p.hourly_start, "--end", p.hourly_end]
    marker, info_file = path.parent / "params.json", path.parent / "generated.json"
    if marker.exists() and (path / "_delta_log").is_dir() and json.loads(marker.read_text()) == wanted:
        print(f"[bench] bronze {kind}: reusing {path.relative_to(ROOT)}", flush=True)
        info = json.loads(info_file.read_text()) if info_file.exists() else {}
        return {**info, "reused": True, **wanted, **_bronze_size(path)}
    shutil.rmtree(path.parent, ignore_errors=True)
    result = run_process(f"generate_{kind}", [*argv, "--path", str(path)], scenario_env(OUT / "generate"), timeout)
    if not result.get("ok", True) or result["returncode"] != 0:
        raise SystemExit(f"bronze {kind} generation failed: {result.get('error')} (see {result['log']})")
    marker.write_text(json.dumps(wanted))
    info = {"generate_s": result.get("run_s"), "rows": result.get("rows"), "generated_at": result.get("measured_at")}
    info_file.write_text(json.dumps(info))
    return {"reused": False, **wanted, **_bronze_size(path), **info}


def _bronze_size(path: Path) -> dict[str, Any]:
    """Files and bytes of a bronze table, from its log."""
    import pyarrow as pa
    from deltalake import DeltaTable

    sizes = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).column("size_bytes").to_pylist()
    return {"files": len(sizes), "bytes": sum(int(x) for x in sizes)}


def machine_info() -> dict[str, Any]:
    """Enough about the machine to read the numbers: cores, CPU, RAM, load, versions."""
    import psutil

    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gib": psutil.virtual_memory().total / 1024**3,
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "pyspark": metadata.version("pyspark"),
        "prefect": metadata.version("prefect"),
        "java_home": JAVA_HOME,
    }


def recheck(plan: list[Scenario]) -> int:
    """Re-derive the chunks and the recorded-version check of every flow scenario in results.json from its
    data folder (the ledger and the target are still there), then rewrite results.json and the docs."""
    results = json.loads(RESULTS.read_text())
    by_name = {s.name: s for s in plan}
    for name, run in results["scenarios"].items():
        scenario = by_name.get(name)
        if scenario is None or scenario.kind not in ("package", "cli") or not run.get("completed"):
            continue
        pipeline = scenario.argv[1] if scenario.kind == "package" else shlex.split(scenario.argv[1])[1]
        out = OUT / f"recheck-{name}.json"
        env = scenario_env(scenario.data_folder)
        command = [sys.executable, "-m", "bench.scenarios", "recheck", "--pipeline", pipeline, "--out", str(out)]
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        update = json.loads(out.read_text())
        for key in ("chunks", "partition_work_s", "versions_checked", "versions_wrong", "versions_wrong_examples"):
            if key in update:
                run[key] = update[key]
        print(
            f"[bench] recheck {name}: {len(run.get('chunks') or [])} chunks, "
            f"{run.get('versions_wrong')} of {run.get('versions_checked')} versions wrong",
            flush=True,
        )
    results["targets"] = evaluate(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    DOCS.write_text(render_markdown(results))
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefect-backfill benchmark (see docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, to check the harness works")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated groups ({', '.join(GROUPS)}) or scenario names; the others are kept from results.json",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per scenario before it is killed")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--prepare-only", action="store_true", help="only generate the bronze tables, then stop")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="measure nothing: read the ledgers and targets of results.json's scenarios again (chunks, recorded "
        "commit versions) and rewrite results.json and the docs",
    )
    parser.add_argument("--max-load", type=float, default=1.5, help="wait for a 1-minute load average below this")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="seconds to wait for it before each scenario (default 1800; --quick 0)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "bench/run.py", *(argv or sys.argv[1:])])
    params = Params.quick_params() if args.quick else Params()
    WAIT.update(
        max_load=args.max_load, max_wait=args.max_wait if args.max_wait is not None else 0 if args.quick else 1800
    )
    plan = scenarios(params)
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    if unknown := wanted - set(GROUPS) - {s.name for s in plan}:
        raise SystemExit(f"unknown group(s)/scenario(s) {', '.join(sorted(unknown))}: groups are {', '.join(GROUPS)}")
    if any(s.group == "hourly" and s.name in wanted for s in plan):
        wanted.add("hourly")  # the hourly steps build on each other: always the whole chain
    if "resume" in wanted:
        wanted.add("package")  # resume resumes package's run
    selected = [s for s in plan if not wanted or s.group in wanted or s.name in wanted]

    previous: dict[str, Any] = {}
    if len(selected) < len(plan) and RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
        if previous.get("params", {}).get("quick") != args.quick:
            previous = {}  # a smoke run never mixes with a measurement

    if args.recheck:
        return recheck(plan)

    started_at, t0 = datetime.now(UTC), time.perf_counter()
    machine = machine_info()
    OUT.mkdir(parents=True, exist_ok=True)
    bronzes: dict[str, Any] = dict(previous.get("bronzes", {}))
    for kind in sorted({s.bronze for s in selected if s.bronze}):
        bronzes[kind] = prepare_bronze(kind, params, args.timeout)
    if args.prepare_only:
        print(json.dumps(bronzes, indent=2, default=str), flush=True)
        return 0

    # One Prefect home for all scenarios, created fresh and migrated once, outside any measurement.
    shutil.rmtree(PREFECT_HOME, ignore_errors=True)
    warmup = run_process("warmup", ["warmup"], scenario_env(OUT / "warmup"), args.timeout)

    runs: dict[str, dict[str, Any]] = {n: r for n, r in previous.get("scenarios", {}).items()}
    for scenario in selected:
        # A fresh target, ledger and cache for every measured run; a chain (resume, hourly) starts fresh.
        if scenario.folder is None or scenario.name == "hourly_plan":
            shutil.rmtree(scenario.data_folder, ignore_errors=True)
        result = run_process(
            scenario.name, [scenario.kind, *scenario.argv], scenario_env(scenario.data_folder), args.timeout
        )
        runs[scenario.name] = {
            "label": scenario.label,
            "group": scenario.group,
            "kind": scenario.kind,
            "argv": list(scenario.argv),
            **scenario.meta,
            **result,
        }
    order = [s.name for s in plan]
    runs = {n: runs[n] for n in order if n in runs}

    machine["load_after"] = _load()
    sessions = [
        *previous.get("sessions", []),
        {
            "command": command,
            "started_at": started_at.strftime("%Y-%m-%d %H:%M UTC"),
            "elapsed_s": round(time.perf_counter() - t0, 1),
            "scenarios": [s.name for s in selected],
        },
    ]
    results: dict[str, Any] = {
        "command": command,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M"),
        "elapsed_s": time.perf_counter() - t0,
        "machine": machine,
        "params": {**asdict(params), "start": START, "end": end_of(START, params.days)},
        "bronzes": bronzes,
        "wait": dict(WAIT),
        "warmup": warmup,
        "sessions": sessions,
        "scenarios": runs,
        "results_file": str(RESULTS.relative_to(ROOT)),
    }
    results["targets"] = evaluate(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    markdown = render_markdown(results)
    if not args.no_docs:
        DOCS.write_text(markdown)
    print(markdown[markdown.index("## Targets") :], flush=True)
    return 0 if all(r.get("ok", True) and r.get("returncode") == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
