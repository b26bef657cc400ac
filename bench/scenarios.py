"""One benchmark scenario per process: ``python -m bench.scenarios KIND --start … --end … --out result.json``.

Each scenario runs in its own process (started by ``bench/run.py``) so that it gets a fresh JVM and its
peak RSS is comparable with the others. The process measures its own phases and writes them as JSON;
the parent samples the RSS of the whole process tree from outside.

Timed phases: ``spark_start_s`` (starting the shared-config Spark session, done up front in every
scenario that needs Spark, so that ``run_s`` compares the backfill strategies and not JVM start-up) and
``run_s`` (the backfill itself: ``BackfillController.run``, the ``backfill`` flow call, or the one
read-transform-overwrite job).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["main"]

START = "2024-01-01"  # the demo's first day: the seed's story starts there


def end_of(start: str, days: int) -> str:
    """Inclusive end date of ``days`` daily partitions from ``start``."""
    return (date.fromisoformat(start) + timedelta(days=days - 1)).isoformat()


def count_delta_rows(path: str) -> int | None:
    """Rows in a Delta table's current version, read with delta-rs: a correctness check that starts no Spark job."""
    import pyarrow.dataset as pads
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        files = DeltaTable(path).file_uris()
    except TableNotFoundError:
        return None
    return int(pads.dataset(files, format="parquet").count_rows()) if files else 0


def _timed_spark_start() -> float:
    from prefect_backfill.engine.spark import get_spark

    t0 = time.perf_counter()
    get_spark()
    return time.perf_counter() - t0


def run_generate(args: argparse.Namespace) -> dict[str, Any]:
    """Write the shared bronze table once per benchmark run (deterministic: same arguments, same data)."""
    from prefect_backfill.demo import generate_orders

    spark_s = _timed_spark_start()
    t0 = time.perf_counter()
    rows = generate_orders(args.path, args.start, args.end, args.rows_per_day)
    return {"spark_start_s": spark_s, "run_s": time.perf_counter() - t0, "rows": rows}


def run_warmup(args: argparse.Namespace) -> dict[str, Any]:
    """Create and migrate the shared Prefect database once, so no measured scenario pays the ~11 s first start."""
    from prefect import flow

    @flow(name="bench-warmup", persist_result=False)
    def warmup() -> None:
        """Nothing: starting the temporary server is the point."""

    t0 = time.perf_counter()
    warmup()
    return {"run_s": time.perf_counter() - t0}


def run_seed(args: argparse.Namespace) -> dict[str, Any]:
    """The seed controller over the range, with its Spark SQL progress table beside its target."""
    from bench.pipelines import source_path, target_path
    from bench.seed import BackfillController
    from prefect_backfill.demo import to_silver_orders
    from prefect_backfill.engine.spark import get_spark

    spark_s = _timed_spark_start()
    target = target_path()
    controller = BackfillController(
        get_spark(),
        source=source_path(),
        target=target,
        progress_table=str(Path(target).parent / "_seed_progress"),
        partition_column="order_date",
        transform=to_silver_orders,
    )
    t0 = time.perf_counter()
    records = controller.run(args.start, args.end)
    run_s = time.perf_counter() - t0
    failed = [{"partition": r.partition, "error": r.error} for r in records if r.status != "COMPLETE"]
    return {
        "spark_start_s": spark_s,
        "run_s": run_s,
        "completed": sum(r.status == "COMPLETE" for r in records),
        "failed": failed,
        "bookkeeping_s": [r.bookkeeping_s for r in records],
        "partition_work_s": [r.work_s for r in records],
        "rows_target": count_delta_rows(target),
        "ok": not failed,
    }


def run_wrong(args: argparse.Namespace) -> dict[str, Any]:
    """The seed's 'wrong approach': read the whole source, transform, overwrite the whole target in one job."""
    from bench.pipelines import source_path, target_path
    from prefect_backfill.demo import to_silver_orders
    from prefect_backfill.engine.spark import get_spark

    spark_s = _timed_spark_start()
    target = target_path()
    t0 = time.perf_counter()
    output = to_silver_orders(get_spark().read.format("delta").load(source_path()))
    output.write.format("delta").mode("overwrite").partitionBy("order_date").save(target)
    run_s = time.perf_counter() - t0
    return {"spark_start_s": spark_s, "run_s": run_s, "rows_target": count_delta_rows(target), "ok": True}


def _flow_run_seconds(flow_run_id: Any) -> float | None:
    """The flow run's own duration as Prefect recorded it (planning included, unlike the summary's duration_s)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    if flow_run.start_time is not None and flow_run.end_time is not None:
        return float((flow_run.end_time - flow_run.start_time).total_seconds())
    return flow_run.total_run_time.total_seconds()


def _ledger_chunks(pipeline: str) -> dict[str, Any]:
    """Per-partition work time and the chunks as the package's ledger recorded them (read after timing,
    with delta-rs): each partition of a chunk carries ``duration_s`` = the chunk's engine time / its
    partitions. Never raises: a reporting nicety."""
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    try:
        events = Ledger(ledger_location(get_pipeline(pipeline), get_settings())).events(pipeline).to_pylist()
    except Exception as exc:
        return {"ledger_error": repr(exc)}
    latest: dict[str, dict[str, Any]] = {}
    for event in events:  # oldest first: the last COMPLETE of each partition (not served from the cache)
        if event["status"] == "COMPLETE" and not event["cached"]:
            latest[event["partition"]] = event
    # A chunk's partitions share their attempt's start and end (not always their table_version: delta-rs
    # history() can label a commit with its neighbour's version when another chunk commits meanwhile).
    chunks: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for key in sorted(latest):
        event = latest[key]
        chunks.setdefault((event["run_id"], event["started_at"], event["finished_at"]), []).append(event)
    ordered = sorted(chunks.values(), key=lambda members: members[0]["partition"])
    return {
        "partition_work_s": [float(e["duration_s"]) for e in latest.values() if e["duration_s"] is not None],
        # [partitions, seconds of engine time] per chunk, oldest partitions first
        "chunks": [[len(m), float(sum(e["duration_s"] or 0.0 for e in m))] for m in ordered],
    }


def _check_versions(pipeline: str) -> dict[str, Any]:
    """Does each COMPLETE partition's ``table_version`` in the ledger name the commit that wrote it? The
    truth is read from the target's commit files themselves (``_delta_log/<version>.json``: commitInfo's
    userMetadata names the run and the chunk's partitions). Never raises: a check, read after timing."""
    from pathlib import Path as _Path

    from prefect_backfill.ledger import Ledger
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    try:
        spec = get_pipeline(pipeline)
        truth: dict[str, int] = {}  # userMetadata -> version
        for commit in sorted(_Path(spec.target.location, "_delta_log").glob("*.json")):
            for line in commit.read_text().splitlines():
                info = json.loads(line).get("commitInfo")
                if info and info.get("userMetadata"):
                    truth[info["userMetadata"]] = int(commit.stem)
        events = Ledger(ledger_location(spec, get_settings())).events(pipeline).to_pylist()
        by_chunk: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
        for event in events:
            if event["status"] == "COMPLETE" and not event["cached"]:
                by_chunk.setdefault((event["run_id"], event["started_at"], event["finished_at"]), []).append(event)
        wrong, checked, examples = 0, 0, []
        for members in by_chunk.values():
            keys = sorted(e["partition"] for e in members)
            span = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
            tag = f"prefect-backfill run={members[0]['run_id']} pipeline={spec.name} partitions={span}"
            expected = truth.get(tag)
            for event in members:
                checked += 1
                if event["table_version"] != expected:
                    wrong += 1
                    if len(examples) < 5:
                        examples.append(f"{event['partition']}: ledger {event['table_version']}, commit {expected}")
        return {"versions_checked": checked, "versions_wrong": wrong, "versions_wrong_examples": examples}
    except Exception as exc:
        return {"versions_check_error": repr(exc)}


def _source_bytes(pipeline: str, start: str, end: str) -> int | None:
    """Source bytes of the range, from the source's Delta log (what the chunks are packed by)."""
    from prefect_backfill.partitions import partitions_between
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.tables import read_snapshot

    spec = get_pipeline(pipeline)
    snapshot = read_snapshot(spec.source.location, spec.partition_column, spec.grain)
    keys = {p.key for p in partitions_between(start, end, spec.grain)}
    return sum(f.size_bytes for k, f in snapshot.partitions.items() if k in keys)


def _jvm_state() -> dict[str, Any]:
    """Whether this process started Spark: a live SparkContext or a java child process."""
    import psutil

    context = None
    if "pyspark" in sys.modules:
        from pyspark import SparkContext

        context = SparkContext._active_spark_context
    java = [p.pid for p in psutil.Process().children(recursive=True) if "java" in p.name().lower()]
    return {
        "pyspark_imported": "pyspark" in sys.modules,
        "spark_context_active": context is not None,
        "java_children": java,
        "jvm_started": context is not None or bool(java),
    }


def _pipeline_target(pipeline: str) -> str:
    from prefect_backfill.registry import get_pipeline

    return get_pipeline(pipeline).target.location


def run_package(args: argparse.Namespace, *, warm_spark: bool = True) -> dict[str, Any]:
    """This package's ``backfill`` flow; ``warm_spark=False`` is the resume scenario, which must not need Spark."""
    import bench.pipelines  # noqa: F401  (registers the bench pipelines)
    from flows.backfill import backfill

    spark_s = _timed_spark_start() if warm_spark else None
    t0 = time.perf_counter()
    state = backfill(
        pipeline=args.pipeline,
        start=args.start,
        end=args.end,
        max_concurrency=args.concurrency,
        chunk_mb=args.chunk_mb,
        chunk_partitions=args.chunk_partitions,
        yes=True,
        return_state=True,
    )
    call_s = time.perf_counter() - t0
    out: dict[str, Any] = {"spark_start_s": spark_s, "run_s": call_s, "flow_state": state.name}
    out.update(_jvm_state())  # before anything below could touch Spark
    try:
        out["flow_run_s"] = _flow_run_seconds(state.state_details.flow_run_id)
    except Exception as exc:  # a reporting nicety: never lose the measurements for it
        out["flow_run_s"] = None
        out["flow_run_error"] = repr(exc)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        out.update(ok=False, error=str(error)[:2000])
        return out
    summary: dict[str, Any] = state.result()
    out.update(
        ok=bool(summary["ok"]),
        flow_duration_s=summary["duration_s"],
        completed=len(summary["completed"]),
        cached=len(summary["cached"]),
        skipped=summary["skipped"],
        failed=summary["failed"],
        not_started=len(summary["not_started"]),
        rows_written=summary["rows_written"],
        rows_target=count_delta_rows(_pipeline_target(args.pipeline)),
        source_bytes=_source_bytes(args.pipeline, args.start, args.end),
    )
    if summary["completed"]:
        out.update(_ledger_chunks(args.pipeline))
        out.update(_check_versions(args.pipeline))
    return out


def run_cli(args: argparse.Namespace) -> dict[str, Any]:
    """The real CLI (``backfill …``) as a child process: its wall time, exit code and output; then, after
    timing, what the ledger says (counts, chunks) for ``run``."""
    import subprocess

    import bench.pipelines  # noqa: F401
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    argv = [str(Path(sys.executable).parent / "backfill"), *shlex.split(args.cli)]
    print(f"$ {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    print(proc.stdout[-20000:], proc.stderr[-20000:], sep="\n", flush=True)
    out: dict[str, Any] = {"run_s": wall, "cli_returncode": proc.returncode, "ok": proc.returncode == 0}
    if proc.returncode != 0:
        out["error"] = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1][:2000]
    command = shlex.split(args.cli)
    if command[0] == "plan" and "--json" in command and proc.returncode == 0:
        plan = json.loads(proc.stdout[proc.stdout.index("{") :])
        out.update(to_run=len(plan["to_run"]), skipped=len(plan["skipped"]))
        return out
    # The flow's summary line, from its log (stderr); the CLI's own copy on stdout is wrapped by Rich.
    last = [line for line in proc.stderr.splitlines() if " rows written in " in line]
    if last:
        out["summary_line"] = last[-1].strip()
        match = re.search(r"([0-9]+) completed, ([0-9]+) cached, ([0-9]+) skipped, ([0-9]+) failed", last[-1])
        if match:
            out.update(dict(zip(("completed", "cached", "skipped", "failed_n"), map(int, match.groups()), strict=True)))
        if (seconds := re.search(r"rows written in ([0-9.]+)s", last[-1])) is not None:
            out["flow_duration_s"] = float(seconds.group(1))
    spec = get_pipeline(command[1])
    states = Ledger(ledger_location(spec, get_settings())).current(spec.name)
    out["ledger_complete"] = sum(1 for s in states.values() if s.status.value == "COMPLETE")
    if out.get("completed"):
        out.update(_ledger_chunks(spec.name))
        out.update(_check_versions(spec.name))
        out["rows_target"] = count_delta_rows(spec.target.location)
    return out


def run_generate_wide(args: argparse.Namespace) -> dict[str, Any]:
    """The wide bronze (orders + ~1 KB payload per row): megabytes of source per day."""
    from bench.datagen import generate_wide

    spark_s = _timed_spark_start()
    t0 = time.perf_counter()
    rows = generate_wide(args.path, args.start, args.end, args.rows_per_day, args.payload_bytes)
    return {"spark_start_s": spark_s, "run_s": time.perf_counter() - t0, "rows": rows}


def run_generate_hourly(args: argparse.Namespace) -> dict[str, Any]:
    """The hourly bronze: one partition (one file) per hour, 5-20 rows each."""
    from bench.datagen import generate_hourly

    spark_s = _timed_spark_start()
    t0 = time.perf_counter()
    rows = generate_hourly(args.path, args.start, args.end)
    return {"spark_start_s": spark_s, "run_s": time.perf_counter() - t0, "rows": rows}


def run_recheck(args: argparse.Namespace) -> dict[str, Any]:
    """Read an earlier scenario's ledger and target again (chunks, recorded commit versions): no timing."""
    import bench.pipelines  # noqa: F401

    return {**_ledger_chunks(args.pipeline), **_check_versions(args.pipeline), "ok": True}


def run_profile(args: argparse.Namespace) -> dict[str, Any]:
    from bench.profile_chunk import run_profile as profile

    return profile(args)


KINDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "generate": run_generate,
    "generate_wide": run_generate_wide,
    "generate_hourly": run_generate_hourly,
    "profile": run_profile,
    "recheck": run_recheck,
    "cli": run_cli,
    "warmup": run_warmup,
    "seed": run_seed,
    "wrong": run_wrong,
    "package": run_package,
    "resume": lambda args: run_package(args, warm_spark=False),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--start", default="")
    parser.add_argument("--end", default="")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rows-per-day", type=int, default=0)
    parser.add_argument("--payload-bytes", type=int, default=1024, help="generate_wide: payload per row")
    parser.add_argument("--pipeline", default="bench_orders", help="package/resume: the pipeline")
    parser.add_argument("--chunk-mb", type=float, default=256.0, help="package: the flow's chunk_mb")
    parser.add_argument("--chunk-partitions", type=int, default=400, help="package: the flow's chunk_partitions")
    parser.add_argument("--cli", default="", help="cli: the backfill command's arguments, shell-quoted")
    parser.add_argument("--warmup", type=int, default=5, help="profile: warm-up chunks")
    parser.add_argument("--repeats", type=int, default=20, help="profile: measured 1-partition chunks")
    parser.add_argument("--path", default="", help="generate: where to write the bronze table")
    parser.add_argument("--out", required=True, type=Path, help="where to write this scenario's JSON")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = KINDS[args.kind](args)
    except Exception as exc:  # report it in the JSON: the parent still records wall time and RSS
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["in_process_s"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(result, indent=2, default=str))
    if args.kind != "resume" and "pyspark" in sys.modules:
        from prefect_backfill.engine.spark import stop_spark

        stop_spark()  # a clean JVM exit, outside every timed phase
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
