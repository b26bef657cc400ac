"""One scale measurement per process: ``python -m bench.scale_scenarios KIND … --out result.json``.

Started by ``bench/scale.py``, which gives each measurement a fresh interpreter and samples the RSS of
its process tree from outside. This process times its own phases and writes them as JSON:

* ``flow``: one ``backfill(...)`` call. ``duration_s`` is the flow's own summary (entry of the flow
  function to its summary: planning, claims, fan-out, ledger flush), ``call_s`` the whole call as seen
  from here (plus starting the embedded Prefect server, creating the flow run and ending it). With
  ``--warm-spark``, Spark is started and the source read once before the timed call.
* ``loop``: no Prefect at all: a plain Python loop over the engine (and, with ``--ledger``, the ledger
  appends the per-partition task makes), the floor the orchestration cost is measured against.
* ``plan``: ``prepare(BackfillRequest.build(...))`` twice (cold, then warm), no flow, no Prefect server.
* ``warmup``: a flow that does nothing, to create and migrate the Prefect database once.
* ``generate``: the small bronze table of the Spark scenario.

The ``__main__`` guard matters: the Dask runner spawns worker processes that re-import this module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["main"]


def run_warmup(args: argparse.Namespace) -> dict[str, Any]:
    from prefect import flow

    @flow(name="bench-scale-warmup", persist_result=False)
    def warmup() -> None:
        """Nothing: starting the temporary server (and migrating its database) is the point."""

    t0 = time.perf_counter()
    warmup()
    return {"call_s": time.perf_counter() - t0}


def run_generate(args: argparse.Namespace) -> dict[str, Any]:
    from prefect_backfill.demo import generate_orders
    from prefect_backfill.engine.spark import get_spark

    t0 = time.perf_counter()
    get_spark()
    spark_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    rows = generate_orders(args.path, args.start, args.end, rows_per_day=args.rows_per_day)
    return {"spark_start_s": spark_s, "call_s": time.perf_counter() - t1, "rows": rows}


def run_plan(args: argparse.Namespace) -> dict[str, Any]:
    """Planning alone, as the flow does it first: validate, read the ledger, plan. Cold, then warm."""
    t0 = time.perf_counter()
    from prefect_backfill.request import BackfillRequest, prepare

    import_s = time.perf_counter() - t0
    timings = []
    prepared = None
    for _ in range(2):
        t1 = time.perf_counter()
        prepared = prepare(BackfillRequest.build(pipeline=args.pipeline, start=args.start, end=args.end, yes=True))
        timings.append(time.perf_counter() - t1)
    assert prepared is not None
    return {
        "import_s": import_s,
        "ledger_breakdown_s": _ledger_breakdown(args.pipeline),
        "plan_s": timings[0],
        "plan_warm_s": timings[1],
        "partitions": len(prepared.partitions),
        "to_run": len(prepared.plan.to_run),
        "skipped": len(prepared.plan.skipped),
    }


def _ledger_breakdown(pipeline: str) -> dict[str, float | int]:
    """Diagnostic, after the timed plans: where reading the ledger goes (Delta scan, Arrow → Python rows,
    folding events into current states)."""
    from prefect_backfill.ledger import Ledger, latest_states
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    ledger = Ledger(ledger_location(spec, get_settings()))
    t0 = time.perf_counter()
    events = ledger.events(spec.name)
    t1 = time.perf_counter()
    rows = events.to_pylist()
    t2 = time.perf_counter()
    latest_states(rows)
    t3 = time.perf_counter()
    return {"events": events.num_rows, "scan_s": t1 - t0, "to_pylist_s": t2 - t1, "fold_s": t3 - t2}


def run_loop(args: argparse.Namespace) -> dict[str, Any]:
    """The engine called in a plain loop; with ``--ledger`` also the task's two ledger appends
    (RUNNING not waited for, COMPLETE waited for), i.e. a one-partition chunk's task body without Prefect."""
    from prefect_backfill.ledger import Ledger, LedgerEvent
    from prefect_backfill.partitions import partitions_between
    from prefect_backfill.planning import Status
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings
    from prefect_backfill.testing import SleepEngine

    spec = get_pipeline(args.pipeline)
    parts = partitions_between(args.start, args.end, spec.grain)
    engine = SleepEngine()
    ledger = Ledger(ledger_location(spec, get_settings())) if args.ledger else None
    run_id = "bench-loop"
    per_partition: list[float] = []
    t0 = time.perf_counter()
    for part in parts:
        t1 = time.perf_counter()
        started = datetime.now(UTC)
        if ledger is not None:
            event = LedgerEvent(run_id, spec.name, part.key, Status.RUNNING, spec.version, spec.fingerprint, 1)
            ledger.record([event], wait=False)
        outcome = engine.process_chunk(spec, [part], commit_tag=f"bench {part.key}")
        rows_in, rows_out = outcome.rows[part.key]
        if ledger is not None:
            done = LedgerEvent(
                run_id,
                spec.name,
                part.key,
                Status.COMPLETE,
                spec.version,
                spec.fingerprint,
                1,
                started_at=started,
                finished_at=datetime.now(UTC),
                rows_in=rows_in,
                rows_out=rows_out,
                duration_s=time.perf_counter() - t1,
            )
            ledger.record([done], wait=True)
        per_partition.append(time.perf_counter() - t1)
    total = time.perf_counter() - t0
    return {"duration_s": total, "call_s": total, "partitions": len(parts), "first_s": per_partition[0], "ok": True}


@contextlib.contextmanager
def _traced_coordination(timings: dict[str, float]) -> Iterator[None]:
    """Time the shared cap's steps (the run lease taken and ended, the cap's value, the claim: lock, live
    runs, held partitions, slots) by wrapping the names ``orchestrate`` calls them by, in this process only.
    Adds microseconds; changes no behaviour."""
    from prefect_backfill import orchestrate

    def timed_fn(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                timings[f"{name}_s"] = time.perf_counter() - t0

        return wrapper

    lease_class = orchestrate.RunLease

    class TimedRunLease(lease_class):  # type: ignore[misc, valid-type]
        def __enter__(self) -> Any:
            t0 = time.perf_counter()
            try:
                return super().__enter__()
            finally:
                timings["lease_enter_s"] = time.perf_counter() - t0

        def __exit__(self, *exc: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return super().__exit__(*exc)
            finally:
                timings["lease_exit_s"] = time.perf_counter() - t0

    saved = {n: getattr(orchestrate, n) for n in ("claim", "pipeline_cap")}
    orchestrate.claim = timed_fn("claim", saved["claim"])  # type: ignore[assignment]
    orchestrate.pipeline_cap = timed_fn("pipeline_cap", saved["pipeline_cap"])  # type: ignore[assignment]
    orchestrate.RunLease = TimedRunLease  # type: ignore[misc]
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(orchestrate, name, original)
        orchestrate.RunLease = lease_class  # type: ignore[misc]


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants (those that exited are missed)."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def run_flow(args: argparse.Namespace) -> dict[str, Any]:
    """One ``backfill`` flow call (Spark warmed up first when ``--warm-spark``: JVM start-up is timed apart)."""
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    from flows.backfill import backfill

    out["import_s"] = time.perf_counter() - t0
    if args.warm_spark:
        from bench.pipelines import source_path
        from prefect_backfill.engine.spark import get_spark

        t1 = time.perf_counter()
        spark = get_spark()
        out["spark_start_s"] = time.perf_counter() - t1
        # Load Delta's classes and warm the JIT on the source once, so the first timed partition does not
        # carry it alone (the partitions of every concurrency level then start equally warm).
        t1 = time.perf_counter()
        spark.read.format("delta").load(source_path()).count()
        out["spark_warm_s"] = time.perf_counter() - t1
    coordination: dict[str, float] = {}
    tracing = _traced_coordination(coordination) if args.trace_coordination else contextlib.nullcontext()
    cpu0 = _tree_cpu_seconds()
    with tracing:
        t2 = time.perf_counter()
        state = backfill(
            pipeline=args.pipeline,
            start=args.start,
            end=args.end,
            max_concurrency=args.concurrency,
            chunk_partitions=args.chunk_partitions,
            yes=True,
            return_state=True,
        )
        out["call_s"] = time.perf_counter() - t2
    # CPU seconds this process and its children (JVM, Prefect server, Dask workers) used during the call,
    # as a share of the machine: near 100% means the call was CPU-bound.
    out["call_cpu_s"] = _tree_cpu_seconds() - cpu0
    out["call_cpu_pct"] = out["call_cpu_s"] / (out["call_s"] * (os.cpu_count() or 1)) * 100
    out["flow_state"] = state.name
    if coordination:
        out["coordination_s"] = coordination
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        out.update(ok=False, error=str(error)[:2000])
        return out
    summary: dict[str, Any] = state.result()
    out.update(
        ok=bool(summary["ok"]),
        duration_s=summary["duration_s"],
        total=summary["total"],
        completed=len(summary["completed"]),
        cached=len(summary["cached"]),
        skipped=summary["skipped"],
        failed=len(summary["failed"]),
        failed_sample=list(summary["failed"])[:5],
        not_started=len(summary["not_started"]),
        rows_written=summary["rows_written"],
    )
    if summary["total"] <= 400:  # per-partition work time from the ledger, in partition order (after timing)
        out["partition_s"] = _ledger_durations(args.pipeline)
    return out


def _ledger_durations(pipeline: str) -> list[float | None]:
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    states = Ledger(ledger_location(spec, get_settings())).current(spec.name)
    return [states[key].duration_s for key in sorted(states)]


KINDS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "warmup": run_warmup,
    "generate": run_generate,
    "plan": run_plan,
    "loop": run_loop,
    "flow": run_flow,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--pipeline", default="bench_noop_day")
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--end", default="2024-01-01")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--chunk-partitions", type=int, default=1, help="flow: chunk_partitions (1: a task per partition)"
    )
    parser.add_argument("--rows-per-day", type=int, default=2_000)
    parser.add_argument("--path", default="", help="generate: where to write the bronze table")
    parser.add_argument("--ledger", action="store_true", help="loop: also append to the ledger as the task does")
    parser.add_argument("--warm-spark", action="store_true", help="flow: start Spark before the timed call")
    parser.add_argument("--trace-coordination", action="store_true", help="flow: time the shared cap's steps")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        result = KINDS[args.kind](args)
    except Exception as exc:  # into the JSON: the parent still records wall time and RSS
        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    result["in_process_s"] = time.perf_counter() - t0
    args.out.write_text(json.dumps(result, indent=2, default=str))
    if "pyspark" in sys.modules:
        from prefect_backfill.engine.spark import stop_spark

        stop_spark()  # a clean JVM exit, after the result is written
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
