"""What a scenario process reads about its own run outside every timing (the ledger's chunks, the commit
versions, the target's rows, whether a JVM started), and the timers it wraps around the shared cap's steps.

Read with delta-rs and the package's own ledger, never with a Spark job; the readers never raise (a failed
read is reported in the JSON, the measurements are kept).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["complete_partitions", "count_delta_rows", "jvm_state", "ledger_breakdown", "readback"]
__all__ += ["source_bytes", "target_rows", "traced_coordination"]

Result = dict[str, Any]


def count_delta_rows(path: str) -> int | None:
    """Rows in a Delta table's current version (None: no table), from its files' Parquet footers."""
    import pyarrow.dataset as pads
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        files = DeltaTable(path).file_uris()
    except TableNotFoundError:
        return None
    return int(pads.dataset(files, format="parquet").count_rows()) if files else 0


def source_bytes(pipeline: str, start: str, end: str) -> int:
    """Source bytes of the range, from the source's Delta log (what the chunks are packed by)."""
    from prefect_backfill.partitions import partitions_between
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.tables import read_snapshot

    spec = get_pipeline(pipeline)
    snapshot = read_snapshot(spec.source.location, spec.partition_column, spec.grain)
    keys = {p.key for p in partitions_between(start, end, spec.grain)}
    return sum(f.size_bytes for k, f in snapshot.partitions.items() if k in keys)


def jvm_state() -> Result:
    """Whether this process started Spark: a live SparkContext or a java child process."""
    import psutil

    context = None
    if "pyspark" in sys.modules:
        from pyspark import SparkContext

        context = SparkContext._active_spark_context
    java = [p.pid for p in psutil.Process().children(recursive=True) if "java" in p.name().lower()]
    out = {"pyspark_imported": "pyspark" in sys.modules, "spark_context_active": context is not None}
    return out | {"java_children": java, "jvm_started": context is not None or bool(java)}


def _ledger(pipeline: str) -> tuple[Any, Any]:
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    return spec, Ledger(ledger_location(spec, get_settings()))


def target_rows(pipeline: str) -> int | None:
    """Rows in the pipeline's target (None: no table yet)."""
    return count_delta_rows(_ledger(pipeline)[0].target.location)


def complete_partitions(pipeline: str) -> int:
    """Partitions whose current status in the ledger is COMPLETE."""
    spec, ledger = _ledger(pipeline)
    return sum(s.status.value == "COMPLETE" for s in ledger.current(spec.name).values())


def readback(pipeline: str) -> Result:
    """The run as the ledger and the target recorded it: the chunks (a chunk's partitions share their
    attempt's start and end; not always their ``table_version``: delta-rs history() can label a commit with
    its neighbour's version when another chunk commits meanwhile), each partition's work time (its chunk's
    engine time / its partitions, in partition order), and whether each partition's ``table_version`` names
    the commit that wrote it, the truth read from the target's commit files (``userMetadata`` names the run
    and the chunk's partitions)."""
    out: Result = {}
    try:
        spec, ledger = _ledger(pipeline)
        latest: dict[str, Result] = {}  # the last COMPLETE of each partition not served from the cache
        chunks: dict[tuple[Any, ...], list[Result]] = {}  # every such COMPLETE, by attempt
        for event in ledger.events(pipeline).to_pylist():  # oldest first
            if event["status"] == "COMPLETE" and not event["cached"]:
                latest[event["partition"]] = event
                chunks.setdefault((event["run_id"], event["started_at"], event["finished_at"]), []).append(event)
        last: dict[tuple[Any, ...], list[Result]] = {}
        for key in sorted(latest):
            event = latest[key]
            last.setdefault((event["run_id"], event["started_at"], event["finished_at"]), []).append(event)
        out["partition_work_s"] = [
            float(e["duration_s"]) for _, e in sorted(latest.items()) if e["duration_s"] is not None
        ]
        # [partitions, seconds of engine time] per chunk, oldest partitions first
        ordered = sorted(last.values(), key=lambda members: members[0]["partition"])
        out["chunks"] = [[len(m), float(sum(e["duration_s"] or 0.0 for e in m))] for m in ordered]
    except Exception as exc:
        return {**out, "ledger_error": repr(exc)}
    try:
        truth: dict[str, int] = {}  # userMetadata -> version
        for commit in sorted(Path(spec.target.location, "_delta_log").glob("*.json")):
            for line in commit.read_text().splitlines():
                if (info := json.loads(line).get("commitInfo")) and info.get("userMetadata"):
                    truth[info["userMetadata"]] = int(commit.stem)
        wrong, checked, examples = 0, 0, list[str]()
        for members in chunks.values():
            keys = sorted(e["partition"] for e in members)
            span = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
            expected = truth.get(f"prefect-backfill run={members[0]['run_id']} pipeline={spec.name} partitions={span}")
            for event in members:
                checked += 1
                if event["table_version"] != expected:
                    wrong += 1
                    if len(examples) < 5:
                        examples.append(f"{event['partition']}: ledger {event['table_version']}, commit {expected}")
        return {**out, "versions_checked": checked, "versions_wrong": wrong, "versions_wrong_examples": examples}
    except Exception as exc:
        return {**out, "versions_check_error": repr(exc)}


def ledger_breakdown(pipeline: str) -> dict[str, float | int]:
    """Where reading the ledger goes (Delta scan, Arrow → Python rows, folding events into current states)."""
    from prefect_backfill.ledger import latest_states

    spec, ledger = _ledger(pipeline)
    t0 = time.perf_counter()
    events = ledger.events(spec.name)
    t1 = time.perf_counter()
    rows = events.to_pylist()
    t2 = time.perf_counter()
    latest_states(rows)
    t3 = time.perf_counter()
    return {"events": events.num_rows, "scan_s": t1 - t0, "to_pylist_s": t2 - t1, "fold_s": t3 - t2}


@contextlib.contextmanager
def traced_coordination(timings: dict[str, float]) -> Iterator[None]:
    """Time the shared cap's steps (the run lease taken and ended, the cap's value, the claim: lock, live
    runs, held partitions, slots) by wrapping the names ``orchestrate`` calls them by, in this process only.
    Adds microseconds; changes no behaviour."""
    from prefect_backfill import orchestrate
    from prefect_backfill.leases import RunLease as lease

    def timed(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return original(*a, **kw)
            finally:
                timings[f"{name}_s"] = time.perf_counter() - t0

        return wrapper

    names: dict[tuple[object, str], str] = {
        (orchestrate, "claim"): "claim",
        (orchestrate, "pipeline_cap"): "pipeline_cap",
    }
    names |= {(lease, "__enter__"): "lease_enter", (lease, "__exit__"): "lease_exit"}
    originals = {(owner, attr): getattr(owner, attr) for owner, attr in names}
    for (owner, attr), name in names.items():
        setattr(owner, attr, timed(name, originals[owner, attr]))
    try:
        yield
    finally:
        for (owner, attr), original in originals.items():
            setattr(owner, attr, original)
