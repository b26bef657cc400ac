"""Real sizes (issue "Pay only for work", item 3): partitions large enough that chunks are cut by bytes, not
by count, run by the package at its defaults against one Spark job over the same rows and against one
partition per job, at a comfortable and at a small driver memory, with the peak RSS of each whole process
tree and what Spark spilled.

Why whole processes, each on a fresh JVM: what a user waits for and what the machine must hold is the
command from exec to exit (the embedded Prefect server and the JVM included), and only a stopwatch and an
RSS sampler outside the process see that. The source is generated once per size and cached under
``.cache/bench-real/<key>/bronze`` (never under /tmp, RAM-backed on some machines); each scenario writes its
own target (deleted after it is measured: gigabytes each), ledger, Prefect home, Spark scratch space and
Spark event log under ``bench/out/real/<key>/``. Spills come from the event log: the sum of ``Memory Bytes
Spilled`` and ``Disk Bytes Spilled`` over every finished task. Results add up across runs (``--only`` measures
a few scenarios again) in ``bench/out/real/<key>/results.json``: delete it to start over. The page is
``docs/real-size-benchmarks.md``, the numbers beside it in ``docs/bench-data/real-sizes.json``.

    python -m bench.real_sizes                                  # 30 days x 1,000,000 rows: every scenario
    python -m bench.real_sizes --only 'dedupe-*' --chunk-mb 512,1024
    python -m bench.real_sizes --days 3 --rows-per-day 20000 --only 'narrow-job-2g,narrow-package-2g' --no-write
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.harness import (
    MIB,
    ROOT,
    Quiet,
    Result,
    _load,
    machine_info,
    measure,
    scenario_env,
    watch,
)

__all__ = ["Scenario", "Source", "main", "page", "plan", "select", "spark_metrics"]

CACHE = ROOT / ".cache" / "bench-real"
WORK = ROOT / "bench" / "out" / "real"
PAGE, DATA = ROOT / "docs" / "real-size-benchmarks.md", ROOT / "docs" / "bench-data" / "real-sizes.json"
# Registered by bench.pipelines (REAL_NAME, REAL_DEDUPE_NAME), which only the scenario processes import:
# importing it registers every bench pipeline with targets under this process's BACKFILL_DATA_DIR.
PIPELINES = {"narrow": "bench_real", "dedupe": "bench_real_dedupe"}
KINDS = ("job", "package", "p1")  # then one "mb<N>" per extra --chunk-mb
# One Spark job over the whole source, the way the seed's "wrong approach" does it, with the pipeline's own
# transform, source and target (registered like a user's) and the package's Spark settings (get_spark).
ONE_JOB = """
import json, sys, time
t0 = time.perf_counter()
from prefect_backfill.engine.spark import get_spark, stop_spark
from prefect_backfill.registry import get_pipeline
spec = get_pipeline(sys.argv[1])
t1 = time.perf_counter()
spark = get_spark()
t2 = time.perf_counter()
output = spec.transform(spark.read.format("delta").load(spec.source.location))
output.write.format("delta").mode("overwrite").partitionBy(spec.partition_column).save(spec.target.location)
t3 = time.perf_counter()
with open(sys.argv[2], "w") as out:
    json.dump({"import_s": t1 - t0, "spark_start_s": t2 - t1, "run_s": t3 - t2}, out)
stop_spark()
"""
# What a scenario left behind, read after it in a process of its own (the scenario's settings), untimed.
READBACK = """
import json, sys
from bench.readback import count_delta_rows, readback
from prefect_backfill.registry import get_pipeline
spec = get_pipeline(sys.argv[1])
out = {"target": spec.target.location, "rows_target": count_delta_rows(spec.target.location)}
if sys.argv[2] == "ledger":
    out["chunks"] = readback(spec.name).get("chunks")
print(json.dumps(out))
"""
COMPRESSED = (".lz4", ".lzf", ".snappy", ".zstd")  # event logs the parser cannot read as JSON lines


@dataclass(frozen=True)
class Source:
    """The generated bronze table of one size; its key names its cache folder, so sizes never mix."""

    days: int
    rows_per_day: int
    payload_bytes: int
    start: str = "2024-01-01"

    @property
    def key(self) -> str:
        return cache_key(self.days, self.rows_per_day, self.payload_bytes, self.start)

    @property
    def end(self) -> str:
        return (date.fromisoformat(self.start) + timedelta(days=self.days - 1)).isoformat()

    @property
    def folder(self) -> Path:
        return CACHE / self.key

    @property
    def bronze(self) -> Path:
        return self.folder / "bronze"


def cache_key(days: int, rows_per_day: int, payload_bytes: int, start: str = "2024-01-01") -> str:
    """``30d-1000000r-128b`` (a start other than the default is named too): one folder per size."""
    key = f"{days}d-{rows_per_day}r-{payload_bytes}b"
    return key if start == "2024-01-01" else f"{key}-{start}"


@dataclass(frozen=True)
class Scenario:
    """One measured process: a transform, how it runs (``job``, ``package``, ``p1``, ``mb<N>``), a driver memory."""

    transform: str
    kind: str
    memory: str

    @property
    def name(self) -> str:
        return f"{self.transform}-{self.kind}-{self.memory}"

    @property
    def pipeline(self) -> str:
        return PIPELINES[self.transform]

    def cli_options(self) -> list[str]:
        """The chunking options of ``backfill run`` beyond the defaults (none for ``package``)."""
        if self.kind == "p1":
            return ["--chunk-partitions", "1"]
        if self.kind.startswith("mb"):
            return ["--chunk-mb", self.kind.removeprefix("mb")]
        return []


def plan(transforms: Sequence[str], memories: Sequence[str], chunk_mbs: Sequence[str]) -> list[Scenario]:
    """Every scenario, the job first in each group (the others' ratios are to it)."""
    kinds = [*KINDS, *(f"mb{mb}" for mb in chunk_mbs)]
    return [Scenario(t, k, m) for t in transforms for m in memories for k in kinds]


def select(scenarios: Sequence[Scenario], only: str | None) -> list[Scenario]:
    """The scenarios ``--only`` names (comma-separated names or shell patterns: ``dedupe-*-512m``)."""
    if not only:
        return list(scenarios)
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [s for s in scenarios if any(fnmatch.fnmatchcase(s.name, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"--only {only!r} names no scenario; there are: {', '.join(s.name for s in scenarios)}")
    return chosen


def memory_mib(memory: str) -> float:
    """``2g`` → 2048, ``512m`` → 512: the order of the tables (largest first)."""
    match = re.fullmatch(r"([0-9.]+)([kmgt]?)b?", memory.strip().lower())
    if not match:
        return 0.0
    scale = {"k": 1 / 1024, "": 1 / MIB, "m": 1, "g": 1024, "t": 1024 * 1024}[match.group(2)]
    return float(match.group(1)) * scale


# -- the source ------------------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    """Bytes on disk under ``folder`` (the Parquet files and the Delta log)."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def ensure_source(source: Source, timeout: float) -> Result:
    """The cached source, generated first if its ``done.json`` is missing (a generation cut short leaves
    none, so it is never taken for a whole table). Generated by ``bench.child generate_wide`` in its own
    process, with Spark's scratch space beside the cache rather than in /tmp."""
    marker = source.folder / "done.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    shutil.rmtree(source.bronze, ignore_errors=True)
    scratch = source.folder / "generate"
    spark = {"spark.local.dir": str(scratch / "spark-local")}
    env = scenario_env(scratch, scratch / "prefect", {"BACKFILL_SPARK_CONF": json.dumps(spark)})
    argv = ["generate_wide", "--path", str(source.bronze), "--start", source.start, "--end", source.end]
    argv += ["--rows-per-day", str(source.rows_per_day), "--payload-bytes", str(source.payload_bytes)]
    done = measure(f"generate-{source.key}", argv, env, source.folder, Quiet(0), timeout)
    if done.get("returncode") != 0 or not done.get("rows"):
        raise SystemExit(f"generating {source.bronze} failed: {done.get('error')} (see {done['log']})")
    shutil.rmtree(scratch, ignore_errors=True)
    info: Result = {"key": source.key, "path": str(source.bronze), "start": source.start, "end": source.end}
    info |= {"days": source.days, "rows_per_day": source.rows_per_day, "payload_bytes": source.payload_bytes}
    info |= {"rows": done["rows"], "bytes": folder_bytes(source.bronze), "files": _parquet_files(source.bronze)}
    info |= {"generate_s": round(done["wall_s"], 1), "generated_at": done["measured_at"]}
    marker.write_text(json.dumps(info, indent=2))
    return info


def _parquet_files(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.parquet"))


# -- one scenario ----------------------------------------------------------------------------------------


def spark_settings(folder: Path) -> dict[str, str]:
    """Extra Spark conf of every scenario (``BACKFILL_SPARK_CONF``): the event log, uncompressed, in one file
    and with block updates, so the spills and the cached data that went to disk can be summed from it;
    Spark's scratch space (shuffle and spill files) in the scenario's folder, on disk, deleted afterwards."""
    return {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": (folder / "events").resolve().as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
        "spark.eventLog.logBlockUpdates.enabled": "true",  # what a persist() put on disk: not a spill, still I/O
        "spark.local.dir": str((folder / "spark-local").resolve()),
    }


def command(scenario: Scenario, source: Source, job_result: Path) -> list[str]:
    """The measured command: the one job as a Python process, or the real CLI at the package's defaults."""
    if scenario.kind == "job":
        return [sys.executable, "-c", ONE_JOB, scenario.pipeline, str(job_result)]
    backfill = str(Path(sys.executable).parent / "backfill")
    window = ["--start", source.start, "--end", source.end, "--yes"]
    return [backfill, "run", scenario.pipeline, *window, *scenario.cli_options()]


def measure_command(
    name: str, argv: Sequence[str], env: Mapping[str, str], out: Path, quiet: Quiet, timeout: float
) -> Result:
    """:func:`bench.harness.measure` for any command (it runs ``bench.child`` only): the same wall time, peak
    RSS of the tree split by kind, tree CPU, others' CPU and load, so that the measured tree is exactly the
    user's command (the CLI, or the one job's interpreter) with nothing of the bench's in it."""
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    waited, cpu_before = quiet.wait()
    load_before = _load()
    print(f"[bench] {name}: {shlex.join(argv[:2] if argv[1] == '-c' else argv)} (load {load_before})", flush=True)
    run = watch(argv, env, log, timeout)
    returncode, wall, peak, others = run.returncode, run.wall_s, run.peak, run.others_cpu_pct
    data: Result = {"wall_s": round(wall, 2), "returncode": returncode, "log": str(log.relative_to(ROOT)), **peak}
    data |= {"load_before": load_before, "load_after": _load(), "waited_s": round(waited, 1)}
    data |= {"cpu_before_pct": round(cpu_before, 1), "tree_cpu_s": round(run.tree_cpu_s, 1)}
    return data | {"others_cpu_pct": round(others, 1), "measured_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}"}


def run_scenario(scenario: Scenario, source: Source, info: Result, work: Path, quiet: Quiet, timeout: float) -> Result:
    """Measure one scenario on a fresh folder (its target deleted afterwards), then read what it left."""
    folder = work / scenario.name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "events").mkdir(parents=True)
    home = work / "prefect-homes" / scenario.name
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(work / "prefect", home)  # migrated once: no scenario pays the database's migration
    extra = {"BACKFILL_PIPELINE_MODULES": "bench.pipelines", "BENCH_REAL_SOURCE_PATH": str(source.bronze)}
    conf = json.dumps(spark_settings(folder))
    extra |= {"BACKFILL_SPARK_DRIVER_MEMORY": scenario.memory, "BACKFILL_SPARK_CONF": conf}
    env = scenario_env(folder, home, extra)
    job_result = work / "results" / f"{scenario.name}.job.json"
    job_result.unlink(missing_ok=True)
    argv = command(scenario, source, job_result)
    result: Result = {"transform": scenario.transform, "kind": scenario.kind, "driver_memory": scenario.memory}
    shown = [*argv[:2], "ONE_JOB", *argv[3:]] if argv[1] == "-c" else argv  # the script is in this module
    result |= {"pipeline": scenario.pipeline, "argv": shown}
    result |= measure_command(scenario.name, argv, env, work, quiet, timeout)
    if job_result.exists():
        result["job"] = json.loads(job_result.read_text())
    log_text = (ROOT / result["log"]).read_text(errors="replace")
    result |= cli_summary(log_text) if scenario.kind != "job" else {}
    if result["returncode"] != 0:
        result["error"] = "timed out" if result["returncode"] is None else last_error(log_text)
    result["spark"] = event_log_metrics(folder / "events")
    result |= read_back(scenario, env, info["rows"])
    _tidy(folder, result.get("target"))
    result["ok"] = result["returncode"] == 0 and bool(result.get("rows_ok"))
    print(f"[bench] {scenario.name}: {status(result)} in {result['wall_s']:.1f} s, {_summary_line(result)}", flush=True)
    return result


def read_back(scenario: Scenario, env: Mapping[str, str], rows_source: int) -> Result:
    """The target's rows (and, for the package, the ledger's chunks), read in a process with the scenario's
    settings; never raises (a failed read is a result)."""
    kind = "target" if scenario.kind == "job" else "ledger"
    argv = [sys.executable, "-c", READBACK, scenario.pipeline, kind]
    done = subprocess.run(argv, cwd=ROOT, env=dict(env), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"rows_ok": False, "readback_error": last_error(done.stderr)}
    found: Result = json.loads(done.stdout.strip().splitlines()[-1])
    return found | {"rows_source": rows_source, "rows_ok": found.get("rows_target") == rows_source}


def _tidy(folder: Path, target: str | None) -> None:
    """Delete the scenario's target and Spark scratch space (gigabytes); keep the log, events and ledger."""
    shutil.rmtree(folder / "spark-local", ignore_errors=True)
    if target and Path(target).resolve().is_relative_to(folder.resolve()):
        shutil.rmtree(target, ignore_errors=True)


def _summary_line(result: Result) -> str:
    spark = result.get("spark", {})
    spilled = (spark.get("memory_spilled_bytes", 0) / MIB, spark.get("disk_spilled_bytes", 0) / MIB)
    return f"peak RSS {result['peak_rss_mib']:.0f} MiB, spilled {spilled[0]:.0f}/{spilled[1]:.0f} MiB (memory/disk)"


# -- reading a scenario's output -------------------------------------------------------------------------


def spark_metrics(lines: Iterable[str]) -> Result:
    """Totals over an event log's JSON lines: tasks (and failed ones), bytes spilled from memory and to disk,
    bytes of cached blocks stored on disk (the package persists each chunk's output: what does not fit in
    memory goes to disk, which Spark does not call a spill), task GC time (summed per task: tasks running
    side by side count a pause each), the largest task peak of execution memory, the JVM's peak heap and
    total GC time as its tasks saw them, and the memory Spark had to share between execution and storage
    (which shows the driver memory took effect)."""
    totals: Result = {"tasks": 0, "failed_tasks": 0, "memory_spilled_bytes": 0, "disk_spilled_bytes": 0}
    totals |= {"task_gc_ms": 0, "peak_execution_memory_bytes": 0, "jvm_heap_peak_bytes": 0, "jvm_gc_ms": 0}
    on_disk: dict[str, int] = {}  # cached block -> the most it held on disk (a removal reports 0)
    for line in lines:
        if '"SparkListenerTaskEnd"' in line:
            event = _json(line)
            if event is not None and event.get("Event") == "SparkListenerTaskEnd":
                _add_task(totals, event)
        elif '"SparkListenerBlockManagerAdded"' in line and (event := _json(line)) is not None:
            totals["unified_memory_bytes"] = max(totals.get("unified_memory_bytes", 0), event.get("Maximum Memory", 0))
        elif '"SparkListenerBlockUpdated"' in line and (event := _json(line)) is not None:
            info = event.get("Block Updated Info") or {}
            block = str(info.get("Block ID", ""))
            if block.startswith("rdd_"):
                on_disk[block] = max(on_disk.get(block, 0), int(info.get("Disk Size", 0) or 0))
    return totals | {"cached_on_disk_bytes": sum(on_disk.values())}


def _json(line: str) -> dict[str, Any] | None:
    """One event, or None for a line cut short (a log of a process that was killed ends mid-line)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _add_task(totals: Result, event: Mapping[str, Any]) -> None:
    totals["tasks"] += 1
    if (event.get("Task End Reason") or {}).get("Reason") != "Success":
        totals["failed_tasks"] += 1
    metrics, executor = event.get("Task Metrics") or {}, event.get("Task Executor Metrics") or {}
    totals["memory_spilled_bytes"] += int(metrics.get("Memory Bytes Spilled", 0))
    totals["disk_spilled_bytes"] += int(metrics.get("Disk Bytes Spilled", 0))
    totals["task_gc_ms"] += int(metrics.get("JVM GC Time", 0))
    peaks = {
        "peak_execution_memory_bytes": metrics.get("Peak Execution Memory", 0),
        "jvm_heap_peak_bytes": executor.get("JVMHeapMemory", 0),
        "jvm_gc_ms": executor.get("TotalGCTime", 0),
    }
    for key, value in peaks.items():
        totals[key] = max(totals[key], int(value or 0))


def event_log_metrics(folder: Path) -> Result:
    """:func:`spark_metrics` over every event log in ``folder`` (one per Spark application; a killed one
    is still ``.inprogress`` and counts as far as it got)."""
    files = sorted(f for f in folder.rglob("*") if f.is_file())
    readable = [f for f in files if not f.name.removesuffix(".inprogress").endswith(COMPRESSED)]
    lines = (line for f in readable for line in f.open(errors="replace"))
    return spark_metrics(lines) | {"event_logs": len(readable), "unreadable_event_logs": len(files) - len(readable)}


def cli_summary(text: str) -> Result:
    """The flow's summary line from the CLI's output: partitions completed and failed, its own duration."""
    lines = [line for line in text.splitlines() if " rows written in " in line]
    if not lines:
        return {}
    out: Result = {"summary_line": lines[-1].strip()}
    if match := re.search(r"([0-9]+) completed, ([0-9]+) cached, ([0-9]+) skipped, ([0-9]+) failed", lines[-1]):
        out |= dict(zip(("completed", "cached", "skipped", "failed"), map(int, match.groups()), strict=True))
    if seconds := re.search(r"rows written in ([0-9.]+)s", lines[-1]):
        out["flow_duration_s"] = float(seconds.group(1))
    if planned := re.findall(r"([0-9]+) partitions in ([0-9]+) chunk\(s\)", text):
        out["planned_chunks"] = int(planned[-1][1])
    return out


def last_error(text: str) -> str:
    """The line that says why a process failed: the last one naming an error, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    named = [line for line in lines if re.search(r"error|exception|failed|killed", line, re.IGNORECASE)]
    return ((named or lines or ["(no output)"])[-1]).lstrip(": ")[:400]


# -- the page --------------------------------------------------------------------------------------------


def status(result: Mapping[str, Any]) -> str:
    """ok, timed out, the exit code and its error, or wrong rows: what a reader must know first."""
    if result.get("returncode") is None:
        return "timed out"
    if result["returncode"] != 0:
        return f"exit {result['returncode']}: {result.get('error', '?')}"
    if not result.get("rows_ok"):
        return f"rows {result.get('rows_target')} of {result.get('rows_source')}" + (
            f" ({result['readback_error']})" if result.get("readback_error") else ""
        )
    return "ok"


def chunks_cell(result: Mapping[str, Any]) -> str:
    """``30 (1 d)``, ``5 (6–7 d)``: chunks and days per chunk from the ledger (else as many as the flow
    planned, from its log); ``1 job`` for the one job."""
    if result.get("kind") == "job":
        return "1 job"
    chunks = result.get("chunks") or []
    if not chunks:
        return f"{result['planned_chunks']} planned" if result.get("planned_chunks") else "–"
    sizes = [int(c[0]) for c in chunks]
    span = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}–{max(sizes)}"
    return f"{len(chunks)} ({span} d)"


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def row(result: Mapping[str, Any], job: Mapping[str, Any] | None) -> str:
    """One scenario's line of its transform's table."""
    spark, split = result.get("spark") or {}, result.get("peak_breakdown_mib") or {}
    parts = "/".join(_mib(split.get(k, 0.0)) for k in ("python", "jvm", "other"))
    ratio = "–"
    if job and job.get("returncode") == 0 and result.get("returncode") == 0:
        ratio = f"{result['wall_s'] / job['wall_s']:.2f}x"
    spilled = f"{_mib(spark.get('memory_spilled_bytes', 0) / MIB)} / {_mib(spark.get('disk_spilled_bytes', 0) / MIB)}"
    if cached := spark.get("cached_on_disk_bytes", 0):
        spilled += f" (+{_mib(cached / MIB)} cached)"
    gc = spark.get("jvm_gc_ms") or spark.get("task_gc_ms") or 0
    cells = [result["kind"], result["driver_memory"], f"{result['wall_s']:.1f}", ratio]
    cells += [f"{_mib(result['peak_rss_mib'])} ({parts})", spilled, f"{gc / 1000:.1f}", chunks_cell(result)]
    load = f"{str(result.get('load_before', '–')).split()[0]} / {result.get('others_cpu_pct', 0):.0f}%"
    cells += [load, status(result).replace("|", "\\|")]
    return "| " + " | ".join(cells) + " |"


def _groups(scenarios: Mapping[str, Result], transform: str) -> list[tuple[str, list[Result]]]:
    """The transform's results by driver memory, largest first; in each, the job first."""
    mine = [r for r in scenarios.values() if r.get("transform") == transform]
    memories = sorted({r["driver_memory"] for r in mine}, key=memory_mib, reverse=True)
    order = {k: i for i, k in enumerate(KINDS)}

    def kind_order(r: Result) -> tuple[int, float]:
        kind = r["kind"]
        return (order.get(kind, len(KINDS)), float(kind[2:]) if kind.startswith("mb") else 0.0)

    return [(m, sorted((r for r in mine if r["driver_memory"] == m), key=kind_order)) for m in memories]


def verdicts(group: Sequence[Result]) -> list[str]:
    """The issue's targets for one transform and memory: wall within 1.1x of the job's, peak RSS no higher,
    and whether the one job stopped fitting (failed, or spilled to disk) where the package did not."""
    job = next((r for r in group if r["kind"] == "job"), None)
    package = next((r for r in group if r["kind"] == "package"), None)
    if job is None or package is None:
        return []
    memory = job["driver_memory"]
    if not package.get("ok"):
        return [f"at {memory} the package did not finish ({status(package)}); the job: {status(job)}"]
    if not job.get("ok"):
        return [f"at {memory} the one job did not finish ({status(job)}); the package did"]
    wall = package["wall_s"] / job["wall_s"]
    rss = package["peak_rss_mib"] / job["peak_rss_mib"]
    found = [
        f"at {memory}: wall {wall:.2f}x the job's ({'PASS' if wall <= 1.1 else 'FAIL'}, target ≤ 1.1x); peak RSS "
        f"{rss:.2f}x ({'PASS' if rss <= 1.0 else 'FAIL'}, target ≤ 1x)"
    ]
    spilled = [(r.get("spark") or {}).get("disk_spilled_bytes", 0) / MIB for r in (job, package)]
    if spilled[0] > 0:
        found.append(
            f"at {memory} the one job spilled {spilled[0]:,.0f} MiB to disk, the package {spilled[1]:,.0f} MiB"
        )
    return found


def _unified(scenarios: Mapping[str, Result]) -> str:
    """What each driver memory left Spark for execution and storage together (from the event log): the
    memory a job must fit in before it spills."""
    found: dict[str, float] = {}
    for result in scenarios.values():
        if unified := (result.get("spark") or {}).get("unified_memory_bytes"):
            found[result["driver_memory"]] = unified / MIB
    if not found:
        return ""
    ordered = sorted(found.items(), key=lambda item: memory_mib(item[0]), reverse=True)
    return " Spark's memory for execution and storage: " + ", ".join(f"{m}: {v:,.0f} MiB" for m, v in ordered) + "."


def page(results: Mapping[str, Any]) -> str:
    """docs/real-size-benchmarks.md from the results (pure: the unit test renders synthetic ones)."""
    source, machine, defaults = results["source"], results["machine"], results.get("defaults", {})
    scenarios: Mapping[str, Result] = results["scenarios"]
    commands = "; ".join(f"`{c}`" for c in results.get("commands", [])) or "`python -m bench.real_sizes`"
    lines = [
        "# Real sizes: the package against one Spark job",
        "",
        f"Measured {results.get('measured', '?')} by {commands} on this machine ({machine.get('cpus')} cores, "
        f"{machine.get('cpu_model')}, {machine.get('ram_gib', 0):.0f} GiB RAM; pyspark {machine.get('pyspark')}, "
        f"prefect {machine.get('prefect')}), over {source['days']} days x {source['rows_per_day']:,} rows of wide "
        f"orders ({source['payload_bytes']} B of incompressible payload a row): {source['rows']:,} rows, "
        f"{source['bytes'] / 1024**3:.2f} GiB of Parquet in {source['files']} files (cached in "
        f"`.cache/bench-real/{source['key']}`). Each scenario is one whole process from exec to exit on a fresh "
        "JVM (the CLI with its embedded Prefect server, or the one job's interpreter), started once the machine "
        "was quiet; its load before is the 1-minute load average when it started, others' CPU the share of the "
        "machine that processes outside its tree used while it ran.",
        "",
        f"`job` is one Spark job: read the whole source, transform, overwrite partitioned by day. `package` is "
        f"`backfill run` at the defaults (chunks of up to {defaults.get('chunk_mb', '?')} MB of source, "
        f"{defaults.get('max_concurrency', '?')} in flight); `p1` is `--chunk-partitions 1`; `mbN` is "
        "`--chunk-mb N`. Peak RSS is the whole process tree's (python / jvm / other: the CLI or job interpreter, "
        "the JVM, the Prefect server); spills are Spark's, summed over every task in the event log (+N cached: "
        "MiB of persisted chunk output that Spark stored on disk, which it does not call a spill); GC is the "
        "JVM's total collection time as its tasks last saw it (else the tasks' own GC time, summed). Ratios are "
        f"to the job at the same driver memory.{_unified(scenarios)}",
    ]
    for transform in PIPELINES:
        groups = _groups(scenarios, transform)
        if not groups:
            continue
        lines += ["", f"## {transform} (`{PIPELINES[transform]}`)", ""]
        lines += [
            "| scenario | driver memory | wall s | vs job | peak RSS MiB (python/jvm/other) | spilled MiB "
            "(memory / disk) | GC s | chunks | load before / others' CPU | status |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        found: list[str] = []
        for _, group in groups:
            job = next((r for r in group if r["kind"] == "job"), None)
            lines += [row(r, job) for r in group]
            found += verdicts(group)
        lines += ["", *(f"- {v}" for v in found)] if found else []
    return "\n".join(lines) + "\n"


# -- the run ---------------------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.real_sizes", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--days", type=int, default=30)
    add("--rows-per-day", type=int, default=1_000_000)
    add("--payload-bytes", type=int, default=128, help="payload characters a row (a multiple of 128)")
    add("--start", default="2024-01-01")
    add("--transforms", default="narrow,dedupe", help=f"comma-separated, of {', '.join(PIPELINES)}")
    add("--driver-memory", default="2g,512m", help="comma-separated BACKFILL_SPARK_DRIVER_MEMORY values")
    add("--chunk-mb", default="", help="extra package scenarios at these --chunk-mb values (comma-separated)")
    add("--only", help="comma-separated scenario names or patterns (narrow-job-2g, 'dedupe-*-512m')")
    add("--timeout", type=float, default=1800.0, help="seconds a scenario may take before it is killed")
    add("--generate-timeout", type=float, default=7200.0, help="seconds the source's generation may take")
    add("--max-wait", type=float, default=900.0, help="seconds to wait for a quiet machine before each scenario")
    add("--max-load", type=float, default=1.0, help="wait for a 1-minute load average below this")
    add("--quiet-cpu", type=float, default=25.0, help="wait for machine CPU use below this %%")
    add("--no-write", action="store_true", help="print the page only; leave docs/ alone")
    return parser.parse_args(argv)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _defaults() -> Result:
    """The package's chunking defaults, from the request model (so the page never states stale ones)."""
    from prefect_backfill.request import BackfillRequest

    fields = BackfillRequest.model_fields
    return {name: fields[name].default for name in ("chunk_mb", "chunk_partitions", "max_concurrency")}


def _warm_prefect(work: Path, timeout: float) -> None:
    """One Prefect database migrated outside every measurement; each scenario starts from a copy of it."""
    shutil.rmtree(work / "prefect", ignore_errors=True)
    env = scenario_env(work / "warmup", work / "prefect", {})
    done = measure("warmup", ["warmup"], env, work, Quiet(0), timeout)
    if done.get("returncode") != 0:
        raise SystemExit(f"the Prefect warm-up failed: {done.get('error')} (see {done['log']})")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    unknown = set(_split(args.transforms)) - set(PIPELINES)
    if unknown:
        raise SystemExit(f"--transforms: unknown {sorted(unknown)}; choose from {', '.join(PIPELINES)}")
    mbs = [f"{float(mb):g}" for mb in _split(args.chunk_mb)]
    selected = select(plan(_split(args.transforms), _split(args.driver_memory), mbs), args.only)
    source = Source(args.days, args.rows_per_day, args.payload_bytes, args.start)
    info = ensure_source(source, args.generate_timeout)
    print(f"[bench] source {source.bronze}: {info['rows']:,} rows, {info['bytes'] / MIB:,.0f} MiB", flush=True)
    work = WORK / source.key
    work.mkdir(parents=True, exist_ok=True)
    results_file = work / "results.json"
    results: Result = json.loads(results_file.read_text()) if results_file.exists() else {"scenarios": {}}
    results |= {"source": info, "machine": machine_info(), "defaults": _defaults()}
    invoked = shlex.join([os.path.relpath(sys.executable, ROOT), "-m", "bench.real_sizes", *(argv or sys.argv[1:])])
    results["commands"] = [*results.get("commands", []), invoked]
    _warm_prefect(work, args.timeout)
    quiet = Quiet(args.max_wait, args.max_load, args.quiet_cpu)
    for scenario in selected:
        results["scenarios"][scenario.name] = run_scenario(scenario, source, info, work, quiet, args.timeout)
        results["measured"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}"
        results_file.write_text(json.dumps(results, indent=2, default=str))  # a run cut short keeps what it has
    text = page(results)
    print(text)
    if not args.no_write:
        PAGE.write_text(text)
        DATA.write_text(json.dumps(results, indent=2, default=str))
        print(f"[bench] wrote {PAGE.relative_to(ROOT)} and {DATA.relative_to(ROOT)}", flush=True)
    return 0  # a scenario that failed (out of memory, timed out) is a result, not a failure of the bench


if __name__ == "__main__":
    raise SystemExit(main())
