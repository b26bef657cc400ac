"""The benchmark: ``.venv/bin/python bench/run.py --days 182 --rows-per-day N [--quick]``.

Runs every scenario in its own subprocess (a fresh JVM each, so peak RSS is comparable), samples the RSS
of each process tree from here, and writes ``bench/out/results.json`` and ``docs/benchmarks.md`` with
PASS/FAIL against the acceptance targets. Scenarios run one after another: on a 2-core machine anything
in parallel would distort every number.
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
from dataclasses import dataclass
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
PREFECT_HOME = OUT / "prefect"
LOGS = OUT / "logs"
RESULTS = OUT / "results.json"
DOCS = ROOT / "docs" / "benchmarks.md"
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"


@dataclass(frozen=True)
class Scenario:
    """One measured process. ``folder`` names whose data folders it uses (resume reuses package_c2's)."""

    name: str
    kind: str
    label: str
    days: int
    concurrency: int = 1
    folder: str | None = None

    @property
    def data_folder(self) -> Path:
        return OUT / (self.folder or self.name)


def scenarios(days: int, small_days: int) -> list[Scenario]:
    """All scenarios, in run order: resume right after the run it resumes."""
    return [
        Scenario("seed", "seed", "seed BackfillController (sequential, MERGE/UPDATE)", days),
        Scenario("package_c1", "package", "package, max_concurrency 1", days, 1),
        Scenario("package_c2", "package", "package, max_concurrency 2", days, 2),
        Scenario("resume_c2", "resume", "package resume of package_c2 (new process)", days, 2, folder="package_c2"),
        Scenario("wrong", "wrong", "wrong approach (read all, overwrite all)", days),
        Scenario("package_c2_small", "package", f"package, max_concurrency 2, {small_days} days", small_days, 2),
    ]


def scenario_env(data_folder: Path) -> dict[str, str]:
    """The scenario's environment: its own data and result folders, the shared Prefect home and jar cache.

    Any BACKFILL_*/PREFECT_* of the caller's shell is dropped (a PREFECT_API_URL would send the runs to
    someone's server; a BACKFILL_LEDGER_PATH would share a ledger between scenarios).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PREFECT_"))}
    env.update(
        JAVA_HOME=JAVA_HOME,
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        BACKFILL_CACHE_DIR=str(ROOT / ".cache"),
        BACKFILL_DATA_DIR=str(data_folder / "data"),
        BACKFILL_RESULT_STORAGE_PATH=str(data_folder / "results"),
        BACKFILL_PIPELINE_MODULES="bench.pipelines",
        BENCH_SOURCE_PATH=str(BRONZE),
        PREFECT_HOME=str(PREFECT_HOME),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
    )
    return env


def run_process(name: str, argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``python -m bench.scenarios ARGV`` under the RSS monitor; merge its own JSON with wall time and RSS."""
    LOGS.mkdir(parents=True, exist_ok=True)
    result_file = OUT / f"{name}.json"
    result_file.unlink(missing_ok=True)
    log = LOGS / f"{name}.log"
    command = [sys.executable, "-m", "bench.scenarios", *argv, "--out", str(result_file)]
    print(f"[bench] {name}: {shlex.join(argv)}", flush=True)
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
    data.update(wall_s=wall, returncode=returncode, log=str(log.relative_to(ROOT)), **peak.as_dict())
    state = "ok" if data.get("ok", True) and returncode == 0 else "FAILED"
    print(
        f"[bench] {name}: {state} in {wall:.1f} s, backfill {data.get('run_s', float('nan')):.1f} s, "
        f"peak RSS {peak.total_mib:.0f} MiB",
        flush=True,
    )
    return data


def prepare_bronze(days: int, rows_per_day: int, timeout: float) -> dict[str, Any]:
    """Generate the shared bronze table, or reuse it when an earlier run wrote the very same one."""
    marker = BRONZE.parent / "params.json"
    wanted = {"start": START, "days": days, "rows_per_day": rows_per_day}
    if marker.exists() and (BRONZE / "_delta_log").is_dir() and json.loads(marker.read_text()) == wanted:
        print(f"[bench] bronze: reusing {BRONZE.relative_to(ROOT)} ({days} days × {rows_per_day} rows)", flush=True)
        return {"reused": True}
    shutil.rmtree(BRONZE.parent, ignore_errors=True)
    argv = ["generate", "--start", START, "--end", end_of(START, days), "--rows-per-day", str(rows_per_day)]
    result = run_process("generate", [*argv, "--path", str(BRONZE)], scenario_env(OUT / "generate"), timeout)
    if not result.get("ok", True) or result["returncode"] != 0:
        raise SystemExit(f"bronze generation failed: {result.get('error')} (see {result['log']})")
    marker.write_text(json.dumps(wanted))
    return result


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="prefect-backfill benchmark (see docs/benchmarks.md)")
    parser.add_argument("--days", type=int, default=182, help="days in the range (default 182: the demo's six months)")
    parser.add_argument(
        "--rows-per-day", type=int, default=2_000, help="bronze rows per day (default: the demo's; pick ~1 s/partition)"
    )
    parser.add_argument("--small-days", type=int, default=30, help="days of the RSS baseline run (default 30)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 days, 200 rows/day, 2-day RSS baseline")
    parser.add_argument("--only", default="", help="comma-separated scenario names to run (default: all)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per scenario before it is killed")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.rows_per_day, args.small_days = 5, 200, 2
    if args.days < 1 or args.rows_per_day < 1 or not 1 <= args.small_days < args.days:
        parser.error("need days >= 1, rows-per-day >= 1 and 1 <= small-days < days")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "bench/run.py", *(argv or sys.argv[1:])])
    plan = scenarios(args.days, args.small_days)
    selected = {s.strip() for s in args.only.split(",") if s.strip()} or {s.name for s in plan}
    unknown = selected - {s.name for s in plan}
    if unknown:
        raise SystemExit(
            f"unknown scenario(s) {', '.join(sorted(unknown))}: choose from {', '.join(s.name for s in plan)}"
        )
    if "resume_c2" in selected and "package_c2" not in selected:
        raise SystemExit("resume_c2 resumes package_c2's run: select package_c2 too")

    started_at, t0 = datetime.now(UTC), time.perf_counter()
    machine = machine_info()
    OUT.mkdir(parents=True, exist_ok=True)
    end = end_of(START, args.days)
    print(f"[bench] {args.days} days ({START} … {end}) × {args.rows_per_day} rows/day; out: {OUT}", flush=True)
    bronze = prepare_bronze(args.days, args.rows_per_day, args.timeout)

    # One Prefect home for all scenarios, created fresh and migrated once, outside any measurement.
    shutil.rmtree(PREFECT_HOME, ignore_errors=True)
    warmup = run_process(
        "warmup", ["warmup", "--start", START, "--end", START], scenario_env(OUT / "warmup"), args.timeout
    )

    runs: dict[str, dict[str, Any]] = {}
    for scenario in plan:
        if scenario.name not in selected:
            continue
        if scenario.folder is None:  # a fresh target, ledger and cache for every measured run
            shutil.rmtree(scenario.data_folder, ignore_errors=True)
        argv_s = ["--start", START, "--end", end_of(START, scenario.days), "--concurrency", str(scenario.concurrency)]
        result = run_process(scenario.name, [scenario.kind, *argv_s], scenario_env(scenario.data_folder), args.timeout)
        runs[scenario.name] = {
            "label": scenario.label,
            "kind": scenario.kind,
            "days": scenario.days,
            "concurrency": scenario.concurrency,
            **result,
        }

    machine["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: dict[str, Any] = {
        "command": command,
        "started_at": started_at.strftime("%Y-%m-%d %H:%M"),
        "elapsed_s": time.perf_counter() - t0,
        "machine": machine,
        "params": {
            "start": START,
            "end": end,
            "days": args.days,
            "rows_per_day": args.rows_per_day,
            "small_days": args.small_days,
            "quick": args.quick,
        },
        "bronze": bronze,
        "warmup": warmup,
        "scenarios": runs,
        "results_file": str(RESULTS.relative_to(ROOT)),
    }
    results["targets"] = evaluate(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    markdown = render_markdown(results)
    if not args.no_docs:
        DOCS.write_text(markdown)
    print(markdown[markdown.index("### Results") :], flush=True)
    return 0 if all(r.get("ok", True) and r.get("returncode") == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
