"""Where the fixed cost of one small chunk goes: the chunk task's body, step by step, without Prefect.

The ``profile`` scenario (``python -m bench.child profile``) drives the very code a chunk task runs (the
``backfill_chunk`` task's body → ``SparkDeltaEngine.process_chunk``) on the demo bronze, with timers wrapped
around its steps *in this process only* (nothing in the package changes): the source's log read for rows in,
the source DataFrame, the grouped count job that checks and fills the persisted output, the ``replaceWhere``
write and commit, finding the commit's version, the ledger events queued and the flush waited for, the cache
records; ``other`` is the rest (tags, local properties, checks, Python). Then, on the same tables, a few
alternatives to what the task does (candidates to remove or cheapen).

Two seams keep this file on public names while the chunk executor moves into the core package:
:func:`run_chunk` is the only place that calls it, and the engine's steps are wrapped by attribute name
(:data:`ENGINE_STEPS`): a step the engine no longer has is left out of the table, not a crash.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["run_chunk", "run_profile"]

ENGINE_STEPS = {  # SparkDeltaEngine's own steps, by the names it calls them
    "snapshot": "rows in (source log)",
    "_read": "source DataFrame",
    "_write": "replaceWhere write + commit",
}
#: Functions the engine calls from its module (engine/delta.py), wrapped there.
MODULE_STEPS = {"commit_version": "commit version (history)"}
FRAME_STEPS = {"collect": "grouped count job", "persist": "persist (registers the cached plan)"}
FRAME_STEPS["unpersist"] = "unpersist"
CRC_CONF = "spark.databricks.delta.allFilesInCrc.thresholdNumFiles"


def run_chunk(pipeline: Any, keys: list[str], run_id: str, target_id: str, digests: dict[str, str | None]) -> None:
    """The seam to the chunk executor (:func:`prefect_backfill.executing.run_job`, what the ``backfill_chunk``
    task runs: no Prefect run), no retries, its ledger and cache records where the flow would put them.
    Raises if a partition failed."""
    from prefect_backfill.executing import ChunkJob, run_job
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.settings import get_settings

    settings, span = get_settings(), keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    job = ChunkJob(
        pipeline=pipeline.name,
        partitions=tuple(keys),
        span=span,
        fingerprint=pipeline.fingerprint,
        target_id=target_id,
        ledger_path=str(ledger_location(pipeline, settings)),
        run_id=run_id,
        source_digests=tuple(digests[k] for k in keys),
        retries=0,
        retry_delay_seconds=0.0,
        result_storage=str(settings.result_storage),
    )
    run_job(job)


class Timers:
    """Seconds per step, summed until :meth:`take`; :meth:`wrap` times every call of a function."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.current[name] += time.perf_counter() - t0

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            with self.step(name):
                return fn(*a, **kw)

        return timed

    def take(self) -> dict[str, float]:
        out, self.current = dict(self.current), defaultdict(float)
        return out


def median_of(fn: Callable[[], Any], n: int = 7) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median per step, the costliest first."""
    names = sorted({n for r in runs for n in r}, key=lambda n: -statistics.median(r.get(n, 0.0) for r in runs))
    return {n: statistics.median(r.get(n, 0.0) for r in runs) for n in names}


def run_profile(start: str, warmup: int, repeats: int) -> dict[str, Any]:
    from deltalake import DeltaTable
    from pyspark import StorageLevel

    from bench.pipelines import PIPELINE_NAME
    from prefect_backfill.caching import PartitionCache
    from prefect_backfill.engine import get_engine
    from prefect_backfill.engine.delta import SparkDeltaEngine
    from prefect_backfill.engine.spark import get_spark
    from prefect_backfill.ledger import Ledger, LedgerEvent
    from prefect_backfill.partitions import parse_partition_key
    from prefect_backfill.planning import Status
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings
    from prefect_backfill.tables import read_snapshot

    t0 = time.perf_counter()
    spark = get_spark()
    spark_s = time.perf_counter() - t0
    spec = get_pipeline(PIPELINE_NAME)
    engine = get_engine()  # the process's engine, as the task body gets it
    assert isinstance(engine, SparkDeltaEngine), "the profile measures Spark + Delta (BACKFILL_ENGINE=spark)"
    t0 = time.perf_counter()
    target_id = engine.ensure_target(spec).table_id or spec.target.location
    ensure_target_s = time.perf_counter() - t0  # creates the empty target: the first Delta write of a fresh JVM
    source = read_snapshot(spec.source.location, spec.partition_column, spec.grain)
    timers, frame = Timers(), type(spark.range(1))  # pyspark 4: the classic DataFrame class overrides the base's
    saved = {a: getattr(frame, a) for a in FRAME_STEPS} | {a: getattr(Ledger, a) for a in ("record", "flush")}
    for attr, label in ENGINE_STEPS.items():  # on this instance only
        if hasattr(engine, attr):
            setattr(engine, attr, timers.wrap(label, getattr(engine, attr)))
    for attr, label in FRAME_STEPS.items():
        setattr(frame, attr, timers.wrap(label, saved[attr]))
    import prefect_backfill.engine.delta as engine_module

    for attr, label in MODULE_STEPS.items():  # in this process only, like everything here
        setattr(engine_module, attr, timers.wrap(label, getattr(engine_module, attr)))

    def record(self: Any, events: Any, *, wait: bool = True) -> None:
        with timers.step(f"ledger: queue {events[0].status.value if events else '?'} events"):
            saved["record"](self, events, wait=wait)

    Ledger.record = record  # type: ignore[method-assign]
    Ledger.flush = timers.wrap("ledger: flush (waited)", saved["flush"])  # type: ignore[method-assign]
    PartitionCache.put = timers.wrap("cache records", PartitionCache.put)  # type: ignore[method-assign]
    tracker = spark.sparkContext.statusTracker()
    store = spark.sparkContext._jsc.sc().statusStore()  # the JVM's AppStatusStore (py4j): jobs' times
    jobs: list[list[list[Any]]] = []  # the Spark jobs each chunk ran: [description, ms]

    def option(value: Any) -> Any:  # a Scala Option through py4j
        return value.get() if value.isDefined() else None

    def job_names(ids: set[int]) -> list[list[Any]]:
        out: list[list[Any]] = []
        for job in sorted(ids):
            try:
                data = store.job(job)
                text = option(data.description()) or data.name()
                submitted, completed = option(data.submissionTime()), option(data.completionTime())
                ms = completed.getTime() - submitted.getTime() if submitted and completed else None
                out.append([str(text).replace("\n", " ")[:120], ms])
            except Exception as exc:  # the status store is a private API: degrade to the stage name
                info = tracker.getJobInfo(job)
                stages = [tracker.getStageInfo(stage) for stage in (info.stageIds if info else [])]
                out.append([next((st.name for st in stages if st is not None), repr(exc)[:80]), None])
        return out

    def one_chunk(keys: list[str]) -> dict[str, float]:
        digests = {k: source.digest(k) for k in keys}
        timers.take()
        before = set(tracker.getJobIdsForGroup(None))
        started = time.perf_counter()
        run_chunk(spec, keys, f"profile-{uuid.uuid4().hex[:8]}", target_id, digests)
        total = time.perf_counter() - started
        steps = timers.take()
        jobs.append(job_names(set(tracker.getJobIdsForGroup(None)) - before))
        return {**steps, "other": total - sum(steps.values()), "total": total}

    available, position = sorted(source.partitions), 0

    def next_days(size: int) -> list[str]:
        """The next ``size`` consecutive source days; from the first day again at the end (a rewrite)."""
        nonlocal position
        size = min(size, len(available))
        position = 0 if position + size > len(available) else position
        first = date.fromisoformat(available[position])
        position += size
        return [(first + timedelta(days=i)).isoformat() for i in range(size)]

    for _ in range(warmup):  # JIT, class loading, the first commits
        one_chunk(next_days(1))
    results: dict[str, Any] = {"spark_start_s": spark_s, "ensure_target_s": ensure_target_s}
    results.update(source_days=len(available), sizes={}, spark_jobs={})
    for size, count in ((1, repeats), (7, max(3, repeats // 4)), (30, 3)):
        jobs.clear()
        runs = [one_chunk(next_days(size)) for _ in range(count)]
        results["spark_jobs"][str(size)] = list(jobs)
        results["sizes"][str(size)] = {"repeats": count, "median_s": _medians(runs), "runs": runs}

    # Alternatives, on the same tables (each timed alone, median of a few).
    target, ledger = spec.target.location, Ledger(ledger_location(spec, get_settings()))
    version, day, column = DeltaTable(target).version(), date.fromisoformat(start).isoformat(), spec.partition_column
    event = ("profile-alt", spec.name, "2099-01-01", Status.PENDING, spec.version, spec.fingerprint)
    alternatives = {
        "source log read, delta-rs read_snapshot (what _rows_in does per chunk)": median_of(
            lambda: read_snapshot(spec.source.location, spec.partition_column, spec.grain)
        ),
        "open the target, delta-rs DeltaTable(path)": median_of(lambda: DeltaTable(target)),
        "open + history(limit=64) (what commit_version does)": median_of(lambda: DeltaTable(target).history(limit=64)),
        "open + history(limit=1)": median_of(lambda: DeltaTable(target).history(limit=1)),
        "read the one commit file _delta_log/<version>.json": median_of(
            lambda: Path(f"{target}/_delta_log/{version:020d}.json").read_text()
        ),
        "ledger: one append of 1 event, waited": median_of(
            lambda: saved["record"](ledger, [LedgerEvent(*event)], wait=True)
        ),
    }
    for attr in FRAME_STEPS:
        setattr(frame, attr, saved[attr])

    def one_day() -> Any:
        return spark.read.format("delta").load(spec.source.location).where(f"`{column}` = DATE '{day}'")

    alternatives["a grouped count of one source day, no persist (Spark job floor)"] = median_of(
        lambda: one_day().groupBy(column).count().collect()
    )
    # The write of one day's output (persisted first, as the task does), three ways: what Delta adds.
    scratch, counter = Path(target).parent / "_profile_scratch", iter(range(1_000_000))
    output = spec.transform(one_day()).persist(StorageLevel.MEMORY_AND_DISK)
    output.count()
    delta, where = str(scratch / "delta"), f"`{column}` = DATE '{day}'"
    alternatives["write one day's output as plain Parquet (no Delta: the Spark write job alone)"] = median_of(
        lambda: output.write.mode("overwrite").parquet(str(scratch / f"parquet-{next(counter)}"))
    )
    output.write.format("delta").partitionBy(column).save(delta)
    alternatives["blind Delta append of one day's output (write job + commit, no replaceWhere)"] = median_of(
        lambda: output.write.format("delta").mode("append").save(delta)
    )
    alternatives["Delta replaceWhere overwrite of that day (the task's write, alone)"] = median_of(
        lambda: output.write.format("delta").mode("overwrite").option("replaceWhere", where).save(delta)
    )
    output.unpersist()

    # Delta keeps a table's file list in its .crc only below allFilesInCrc.thresholdNumFiles (50 files, an
    # internal conf); above it, every commit makes the next write rebuild the snapshot (the "Compute
    # snapshot" jobs). The same 1-day chunks with the threshold raised (one priming chunk first; the frame's
    # steps are no longer timed apart: they count as "other"):
    spark.conf.set(CRC_CONF, "100000")
    try:
        one_chunk(next_days(1))
        jobs.clear()
        crc_runs = [one_chunk(next_days(1)) for _ in range(max(3, repeats // 2))]
        results["crc_threshold_raised"] = {
            "conf": f"{CRC_CONF}=100000",
            "repeats": len(crc_runs),
            "median_s": {n: v for n, v in sorted(_medians(crc_runs).items())},
            "spark_jobs": list(jobs),
        }
    finally:
        spark.conf.unset(CRC_CONF)

    # Warm, in one JVM: the whole range as the single read-all/overwrite-all job, as one chunk, and as two
    # chunks side by side (what the flow does at max_concurrency 2), median of 3 each.
    whole = [parse_partition_key(k, spec.grain) for k in available]
    halves = (whole[: len(whole) // 2], whole[len(whole) // 2 :])

    def single_job() -> None:
        out = spec.transform(spark.read.format("delta").load(spec.source.location))
        out.write.format("delta").mode("overwrite").partitionBy(column).save(str(scratch / "single"))

    def two_chunks() -> None:
        with ThreadPoolExecutor(2) as pool:
            tags = (f"profile half {i} {uuid.uuid4().hex[:8]}" for i in range(2))
            for future in [
                pool.submit(engine.process_chunk, spec, part, tag) for part, tag in zip(halves, tags, strict=True)
            ]:
                future.result()

    results["whole_range_s"] = {
        "days": len(whole),
        "single read-all/overwrite-all job": median_of(single_job, 3),
        "one chunk of every day (process_chunk)": median_of(
            lambda: engine.process_chunk(spec, whole, commit_tag=f"profile whole {uuid.uuid4().hex[:8]}"), 3
        ),
        "two chunks of half the days, side by side": median_of(two_chunks, 3),
    }
    return {**results, "alternatives_s": alternatives, "target_versions": DeltaTable(target).version(), "ok": True}
