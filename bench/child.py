"""The measured process: ``python -m bench.child KIND [options] --out result.json``.

Started by :func:`bench.harness.measure`, which samples its process tree from outside, this process times its
own phases and writes them as JSON: ``run_s`` is the timed thing as seen from here (the ``backfill(...)`` call
with the embedded server's start, the seed's loop, the single job, the CLI child process); ``flow_duration_s``
what the flow's summary reports; ``spark_start_s`` the ``get_spark()`` done before it where the kind needs
Spark, so that ``run_s`` compares strategies, not JVM start-up. What the ledger and target say afterwards is
read outside every timing (:mod:`bench.readback`).

Only the standard library is imported at module level: imports are part of what is measured, and the Dask
runner's worker processes re-import this module (hence also the ``__main__`` guard).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.readback import (
    complete_partitions,
    count_delta_rows,
    jvm_state,
    ledger_breakdown,
    readback,
    source_bytes,
    target_rows,
    traced_coordination,
)

__all__ = ["main"]

Result = dict[str, Any]


def _timed_spark_start() -> float:
    from prefect_backfill.engine.spark import get_spark

    t0 = time.perf_counter()
    get_spark()
    return time.perf_counter() - t0


def run_warmup(args: argparse.Namespace) -> Result:
    from prefect import flow

    @flow(name="bench-warmup", persist_result=False)
    def warmup() -> None:
        """Nothing: starting the temporary server (and migrating its database) is the point."""

    t0 = time.perf_counter()
    warmup()
    return {"run_s": time.perf_counter() - t0}


def run_generate(args: argparse.Namespace) -> Result:
    """A shared source: the demo's orders, the wide orders (~1 KB payload a row) or hourly events."""
    from bench.datagen import generate_hourly, generate_wide
    from prefect_backfill.demo import generate_orders

    spark_s = _timed_spark_start()
    t0 = time.perf_counter()
    if args.kind == "generate_wide":
        rows = generate_wide(args.path, args.start, args.end, args.rows_per_day, args.payload_bytes)
    elif args.kind == "generate_hourly":
        rows = generate_hourly(args.path, args.start, args.end)
    else:
        rows = generate_orders(args.path, args.start, args.end, rows_per_day=args.rows_per_day)
    return {"spark_start_s": spark_s, "run_s": time.perf_counter() - t0, "rows": rows}


def run_seed(args: argparse.Namespace) -> Result:
    """The seed controller over the range, with its Spark SQL progress table beside its target."""
    from bench.pipelines import source_path, target_path
    from bench.seed import BackfillController
    from prefect_backfill.demo import to_silver_orders
    from prefect_backfill.engine.spark import get_spark

    spark_s = _timed_spark_start()
    target = target_path()
    progress = str(Path(target).parent / "_seed_progress")
    controller = BackfillController(get_spark(), source_path(), target, progress, "order_date", to_silver_orders)
    t0 = time.perf_counter()
    records = controller.run(args.start, args.end)
    run_s = time.perf_counter() - t0
    failed = [{"partition": r.partition, "error": r.error} for r in records if r.status != "COMPLETE"]
    out: Result = {"spark_start_s": spark_s, "run_s": run_s, "completed": sum(r.status == "COMPLETE" for r in records)}
    out |= {"bookkeeping_s": [r.bookkeeping_s for r in records], "partition_work_s": [r.work_s for r in records]}
    return out | {"failed": failed, "rows_target": count_delta_rows(target), "ok": not failed}


def run_wrong(args: argparse.Namespace) -> Result:
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


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (those that exited are missed)."""
    import psutil

    me, total = psutil.Process(), 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def run_flow(args: argparse.Namespace, spark: str, preload: bool) -> Result:
    """One ``backfill(...)`` call. ``spark``: ``start`` starts the session first, ``warm`` also reads the
    source once (Delta's classes loaded, the JIT warm: every concurrency level starts equally warm),
    ``none`` leaves it to the flow (a resume must not need it). ``preload`` imports the pipeline modules
    before the timed call (``package``/``resume``, as they always did)."""
    out: Result = {}
    t0 = time.perf_counter()
    from flows.backfill import backfill

    out["import_s"] = time.perf_counter() - t0
    if preload:
        import bench.pipelines  # noqa: F401  (registers the bench pipelines)
    out["spark_start_s"] = _timed_spark_start() if spark != "none" else None
    if spark == "warm":
        from bench.pipelines import source_path
        from prefect_backfill.engine.spark import get_spark

        t1 = time.perf_counter()
        get_spark().read.format("delta").load(source_path()).count()
        out["spark_warm_s"] = time.perf_counter() - t1
    request = {"pipeline": args.pipeline, "start": args.start, "end": args.end, "max_concurrency": args.concurrency}
    sizes = {"chunk_mb": args.chunk_mb, "chunk_partitions": args.chunk_partitions}
    request |= {k: v for k, v in sizes.items() if v is not None}  # not given: the flow's defaults
    coordination: dict[str, float] = {}
    cpu0 = _tree_cpu_seconds()
    with traced_coordination(coordination) if args.trace_coordination else contextlib.nullcontext():
        t2 = time.perf_counter()
        state = backfill(**request, yes=True, return_state=True)
        out["run_s"] = time.perf_counter() - t2
    # CPU this process and its children (JVM, Prefect server, Dask workers) used during the call, as a share
    # of the machine: near 100% means the call was CPU-bound.
    out["call_cpu_s"] = _tree_cpu_seconds() - cpu0
    out["call_cpu_pct"] = out["call_cpu_s"] / (out["run_s"] * (os.cpu_count() or 1)) * 100
    out.update(flow_state=state.name, **jvm_state())  # before anything below could touch Spark
    if coordination:
        out["coordination_s"] = coordination
    try:
        out["flow_run_s"] = _flow_run_seconds(state.state_details.flow_run_id)
    except Exception as exc:  # a reporting nicety: never lose the measurements for it
        out.update(flow_run_s=None, flow_run_error=repr(exc))
    if not state.is_completed():
        return {**out, "ok": False, "error": str(state.result(raise_on_failure=False))[:2000]}
    from prefect_backfill.results import BackfillSummary

    done = state.result()  # the flow returns its typed summary; the results file is JSON
    assert isinstance(done, BackfillSummary), done
    summary: Result = done.to_dict()
    out.update({k: summary[k] for k in ("total", "skipped", "failed", "rows_written")}, ok=bool(summary["ok"]))
    out.update({k: len(summary[k]) for k in ("completed", "cached", "not_started")}, failed_n=len(summary["failed"]))
    out["flow_duration_s"] = summary["duration_s"]
    out.update(rows_target=target_rows(args.pipeline), source_bytes=source_bytes(args.pipeline, args.start, args.end))
    return {**out, **readback(args.pipeline)} if summary["completed"] else out


def _flow_run_seconds(flow_run_id: Any) -> float | None:
    """The flow run's own duration as Prefect recorded it (planning included, unlike the summary's)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    if flow_run.start_time is not None and flow_run.end_time is not None:
        return float((flow_run.end_time - flow_run.start_time).total_seconds())
    return flow_run.total_run_time.total_seconds()


def run_cli(args: argparse.Namespace) -> Result:
    """The real CLI (``backfill …``) as a child process: its wall time, exit code and output; then, after
    timing, what its ``--json`` plan or the ledger says (counts, chunks) for ``run``."""
    argv = [str(Path(sys.executable).parent / "backfill"), *shlex.split(args.cli)]
    print(f"$ {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    out: Result = {"run_s": time.perf_counter() - t0, "cli_returncode": proc.returncode, "ok": proc.returncode == 0}
    print(proc.stdout[-20000:], proc.stderr[-20000:], sep="\n", flush=True)
    if proc.returncode != 0:
        out["error"] = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1][:2000]
    command = shlex.split(args.cli)
    if command[0] == "plan" and "--json" in command and proc.returncode == 0:
        plan = json.loads(proc.stdout[proc.stdout.index("{") :])
        return {**out, "to_run": len(plan["to_run"]), "skipped": len(plan["skipped"])}
    # The flow's summary line, from its log (stderr); the CLI's own copy on stdout is wrapped by Rich.
    if last := [line for line in proc.stderr.splitlines() if " rows written in " in line]:
        out["summary_line"] = last[-1].strip()
        if match := re.search(r"([0-9]+) completed, ([0-9]+) cached, ([0-9]+) skipped, ([0-9]+) failed", last[-1]):
            out.update(zip(("completed", "cached", "skipped", "failed_n"), map(int, match.groups()), strict=True))
        if (seconds := re.search(r"rows written in ([0-9.]+)s", last[-1])) is not None:
            out["flow_duration_s"] = float(seconds.group(1))
    out["ledger_complete"] = complete_partitions(command[1])
    if out.get("completed"):
        out.update(readback(command[1]), rows_target=target_rows(command[1]))
    return out


def run_loop(args: argparse.Namespace) -> Result:
    """The engine called in a plain loop, no Prefect; with ``--ledger`` also the task's two ledger appends
    (RUNNING not waited for, COMPLETE waited for): a one-partition chunk's task body, the floor."""
    from datetime import UTC, datetime

    from prefect_backfill.ledger import Ledger, LedgerEvent
    from prefect_backfill.partitions import partitions_between
    from prefect_backfill.planning import Status
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings
    from prefect_backfill.testing import SleepEngine

    spec = get_pipeline(args.pipeline)
    parts = partitions_between(args.start, args.end, spec.grain)
    engine, ledger = SleepEngine(), Ledger(ledger_location(spec, get_settings())) if args.ledger else None
    run, per_partition = ("bench-loop", spec.name), []
    t0 = time.perf_counter()
    for part in parts:
        t1, started = time.perf_counter(), datetime.now(UTC)
        if ledger is not None:
            ledger.record([LedgerEvent(*run, part.key, Status.RUNNING, spec.version, spec.fingerprint, 1)], wait=False)
        rows_in, rows_out = engine.process_chunk(spec, [part], commit_tag=f"bench {part.key}").rows[part.key]
        if ledger is not None:
            end: Result = {"started_at": started, "finished_at": datetime.now(UTC), "rows_in": rows_in}
            end.update(rows_out=rows_out, duration_s=time.perf_counter() - t1)
            ledger.record(
                [LedgerEvent(*run, part.key, Status.COMPLETE, spec.version, spec.fingerprint, 1, **end)], wait=True
            )
        per_partition.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    return {"run_s": total, "flow_duration_s": total, "partitions": len(parts), "first_s": per_partition[0]}


def run_plan(args: argparse.Namespace) -> Result:
    """Planning alone, as the flow does it first (validate, read the ledger, plan): cold, then warm."""
    t0 = time.perf_counter()
    from prefect_backfill.preparing import prepare
    from prefect_backfill.request import BackfillRequest

    import_s = time.perf_counter() - t0
    timings, prepared = [], None
    for _ in range(2):
        t1 = time.perf_counter()
        prepared = prepare(BackfillRequest.build(pipeline=args.pipeline, start=args.start, end=args.end, yes=True))
        timings.append(time.perf_counter() - t1)
    assert prepared is not None
    out: Result = {"import_s": import_s, "ledger_breakdown_s": ledger_breakdown(args.pipeline), "plan_s": timings[0]}
    counts = {"partitions": prepared.partitions, "to_run": prepared.plan.to_run, "skipped": prepared.plan.skipped}
    return out | {"plan_warm_s": timings[1]} | {k: len(v) for k, v in counts.items()}


def run_recheck(args: argparse.Namespace) -> Result:
    """Read an earlier scenario's ledger and target again (chunks, recorded commit versions): no timing."""
    return {**readback(args.pipeline), "ok": True}


def run_profile(args: argparse.Namespace) -> Result:
    from bench.profile_chunk import run_profile as profile

    return profile(args.start, args.warmup, args.repeats)


def run_trust(args: argparse.Namespace) -> Result:
    from bench.trust_cost import run_trust as trust

    return trust(args.start, args.end, args.rows_per_day, args.repeats)


def _package(spark: str, preload: bool) -> Callable[[argparse.Namespace], Result]:
    return lambda args: run_flow(args, spark, preload)


KINDS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "warmup": run_warmup,
    **dict.fromkeys(("generate", "generate_wide", "generate_hourly"), run_generate),
    **{"seed": run_seed, "wrong": run_wrong, "cli": run_cli, "loop": run_loop, "plan": run_plan},
    **{"recheck": run_recheck, "profile": run_profile, "trust": run_trust},
    "package": _package("start", preload=True),
    "resume": _package("none", preload=True),  # a resume must not need Spark
    "flow": lambda args: run_flow(args, "warm" if args.warm_spark else "none", preload=False),
}


def main(argv: list[str] | None = None) -> int:
    """Run one kind, write its JSON (an exception too: the parent still records wall time and RSS)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--out", required=True, type=Path)
    for flag, default in {"--start": "2024-01-01", "--end": "2024-01-01", "--pipeline": "bench_orders"}.items():
        parser.add_argument(flag, default=default)
    for flag, default in {"--cli": "", "--path": ""}.items():  # the backfill command's arguments; a source's folder
        parser.add_argument(flag, default=default)
    for flag, number in {"--concurrency": 2, "--rows-per-day": 2_000, "--payload-bytes": 1024, "--warmup": 5}.items():
        parser.add_argument(flag, type=int, default=number)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--chunk-mb", type=float)  # not given: the flow's default
    parser.add_argument("--chunk-partitions", type=int)
    for flag in ("--warm-spark", "--trace-coordination", "--ledger"):
        parser.add_argument(flag, action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = KINDS[args.kind](args)
    except Exception as exc:
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["in_process_s"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(result, indent=2, default=str))
    if "pyspark" in sys.modules:
        from prefect_backfill.engine.spark import stop_spark

        stop_spark()  # a clean JVM exit, after the result is written and outside every timing
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
