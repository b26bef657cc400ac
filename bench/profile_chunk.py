"""Where the fixed cost of one small chunk goes: the chunk task's body, step by step, without Prefect.

Run by ``bench/run.py`` (scenario ``profile``) in its own process: ``python -m bench.scenarios profile …``.
It drives the very code a chunk task runs (``executing.ChunkExecutor.run`` → ``SparkDeltaEngine.process_chunk``)
on the bench's demo bronze, with timers wrapped around the steps *in this process only* (nothing in the
package changes):

- ``rows in (source log)``: ``engine.snapshot(source)``, the source's Delta log read by delta-rs for the
  rows in of each partition (``_rows_in``);
- ``source DataFrame``: ``spark.read.format("delta").load(source)`` (the JVM's Delta log update + analysis);
- ``grouped count job``: the ``groupBy(partition).count().collect()`` that checks the output and fills the
  persisted output (read + transform + cache + a small shuffle);
- ``replaceWhere write + commit``: ``_write`` (the write job and Delta's commit);
- ``persist`` and ``unpersist`` of the output;
- ``commit version (history)``: ``_commit_version``, delta-rs opening the target and reading its history;
- ``ledger: …`` and ``cache records``: the events the task queues (RUNNING, COMPLETE: not waited for) and
  the flush it waits for at its end, and one cache record per partition;
- ``other``: what is left of the task body (tags, local properties, checks, Python).

Then, on the same tables, a few alternatives to what the task does (candidates to remove or cheapen).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

__all__ = ["run_profile"]


class Timers:
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


def _days(first: date, n: int) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range(n)]


def run_profile(args: argparse.Namespace) -> dict[str, Any]:
    from deltalake import DeltaTable

    import bench.pipelines  # noqa: F401
    from bench.pipelines import PIPELINE_NAME
    from prefect_backfill.caching import PartitionCache
    from prefect_backfill.engine import get_engine
    from prefect_backfill.engine.spark import get_spark
    from prefect_backfill.executing import ChunkExecutor as _Chunk
    from prefect_backfill.ledger import Ledger, LedgerEvent
    from prefect_backfill.planning import Status
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings
    from prefect_backfill.tables import read_snapshot

    t0 = time.perf_counter()
    spark = get_spark()
    spark_s = time.perf_counter() - t0
    settings = get_settings()
    spec = get_pipeline(PIPELINE_NAME)
    engine = get_engine()
    t0 = time.perf_counter()
    target_id = engine.ensure_target(spec).table_id or spec.target.location
    ensure_target_s = time.perf_counter() - t0  # creates the empty target: the first Delta write of a fresh JVM
    source_snapshot = read_snapshot(spec.source.location, spec.partition_column, spec.grain)
    ledger = Ledger(ledger_location(spec, settings))
    cache = PartitionCache(str(settings.result_storage))
    timers = Timers()

    # Timers around the steps, on this instance and this process's classes only.
    engine.snapshot = timers.wrap("rows in (source log)", engine.snapshot)  # type: ignore[method-assign]
    engine._read = timers.wrap("source DataFrame", engine._read)  # type: ignore[method-assign]
    engine._write = timers.wrap("replaceWhere write + commit", engine._write)  # type: ignore[method-assign]
    engine._commit_version = timers.wrap("commit version (history)", engine._commit_version)  # type: ignore[method-assign]
    frame = type(spark.range(1))  # pyspark 4: the classic DataFrame class, which overrides the base's methods
    original_collect, original_unpersist, original_persist = frame.collect, frame.unpersist, frame.persist
    frame.collect = timers.wrap("grouped count job", original_collect)  # type: ignore[method-assign]
    frame.unpersist = timers.wrap("unpersist", original_unpersist)  # type: ignore[method-assign]
    frame.persist = timers.wrap("persist (registers the cached plan)", original_persist)  # type: ignore[method-assign]
    tracker = spark.sparkContext.statusTracker()

    def spark_jobs() -> set[int]:
        return set(tracker.getJobIdsForGroup(None))

    store = spark.sparkContext._jsc.sc().statusStore()  # the JVM's AppStatusStore (py4j): jobs' times

    def _option(value: Any) -> Any:
        return value.get() if value.isDefined() else None

    def job_names(ids: set[int]) -> list[list[Any]]:
        """Each job as [description or name, milliseconds]."""
        out: list[list[Any]] = []
        for job in sorted(ids):
            try:
                data = store.job(job)
                text = _option(data.description()) or data.name()
                submitted, completed = _option(data.submissionTime()), _option(data.completionTime())
                ms = completed.getTime() - submitted.getTime() if submitted and completed else None
                out.append([str(text).replace("\n", " ")[:120], ms])
            except Exception as exc:  # the status store is a private API: degrade to the stage name
                info = tracker.getJobInfo(job)
                stages = [tracker.getStageInfo(stage) for stage in (info.stageIds if info else [])]
                out.append([next((st.name for st in stages if st is not None), repr(exc)[:80]), None])
        return out

    original_record, original_flush = ledger.record, ledger.flush

    def record(events: Any, *, wait: bool = True) -> None:
        status = events[0].status.value if events else "?"
        with timers.step(f"ledger: queue {status} events"):
            original_record(events, wait=wait)

    ledger.record = record  # type: ignore[method-assign]
    ledger.flush = timers.wrap("ledger: flush (waited)", original_flush)  # type: ignore[method-assign]
    cache.put = timers.wrap("cache records", cache.put)  # type: ignore[method-assign]

    jobs: list[list[list[Any]]] = []  # the Spark jobs each chunk ran: [description, ms]

    def one_chunk(keys: list[str]) -> dict[str, float]:
        unit = _Chunk(
            spec=spec,
            fingerprint=spec.fingerprint,
            ledger=ledger,
            run_id=f"profile-{uuid.uuid4().hex[:8]}",
            engine=engine,
            target_id=target_id,
            digests={k: source_snapshot.digest(k) for k in keys},
            cache=cache,
            retries=0,
            delay=0.0,
            deadline=None,
        )
        timers.take()
        jobs_before = spark_jobs()
        start = time.perf_counter()
        unit.run(keys, 0)
        unit.ledger.flush()
        total = time.perf_counter() - start
        steps = timers.take()
        new_jobs = spark_jobs() - jobs_before
        jobs.append(job_names(new_jobs))
        if unit.failed:
            raise RuntimeError(f"profile chunk {keys[0]}..{keys[-1]} failed: {unit.failed[0]}")
        steps["other"] = total - sum(steps.values())
        steps["total"] = total
        return steps

    first = date.fromisoformat(args.start)
    available = sorted(source_snapshot.partitions)
    position = 0

    def next_days(size: int) -> list[str]:
        """The next ``size`` consecutive source days; from the first day again at the end (a rewrite)."""
        nonlocal position
        size = min(size, len(available))
        if position + size > len(available):
            position = 0
        keys = _days(date.fromisoformat(available[position]), size)
        position += size
        return keys

    for _ in range(args.warmup):  # JIT, class loading, the first commits
        one_chunk(next_days(1))
    results: dict[str, Any] = {
        "spark_start_s": spark_s,
        "ensure_target_s": ensure_target_s,
        "source_days": len(available),
        "sizes": {},
    }
    for size, repeats in ((1, args.repeats), (7, max(3, args.repeats // 4)), (30, 3)):
        jobs.clear()
        runs = [one_chunk(next_days(size)) for _ in range(repeats)]
        results.setdefault("spark_jobs", {})[str(size)] = list(jobs)
        names = sorted({n for r in runs for n in r}, key=lambda n: -statistics.median(r.get(n, 0.0) for r in runs))
        results["sizes"][str(size)] = {
            "repeats": repeats,
            "median_s": {n: statistics.median(r.get(n, 0.0) for r in runs) for n in names},
            "runs": runs,
        }

    # Alternatives, on the same tables (each timed alone, median of a few).
    def median_of(fn: Callable[[], Any], n: int = 7) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    target = spec.target.location
    version = DeltaTable(target).version()
    alternatives = {
        "source log read, delta-rs read_snapshot (what _rows_in does per chunk)": median_of(
            lambda: read_snapshot(spec.source.location, spec.partition_column, spec.grain)
        ),
        "open the target, delta-rs DeltaTable(path)": median_of(lambda: DeltaTable(target)),
        "open + history(limit=64) (what _commit_version does)": median_of(lambda: DeltaTable(target).history(limit=64)),
        "open + history(limit=1)": median_of(lambda: DeltaTable(target).history(limit=1)),
        "read the one commit file _delta_log/<version>.json": median_of(
            lambda: Path(f"{target}/_delta_log/{version:020d}.json").read_text()
        ),
        "ledger: one append of 1 event, waited": median_of(
            lambda: original_record(
                [LedgerEvent("profile-alt", spec.name, "2099-01-01", Status.PENDING, spec.version, spec.fingerprint)],
                wait=True,
            )
        ),
    }
    day = first.isoformat()
    column = spec.partition_column

    def spark_count_only() -> None:
        spark.read.format("delta").load(spec.source.location).where(f"`{column}` = DATE '{day}'").groupBy(
            column
        ).count().collect()

    frame.collect = original_collect  # type: ignore[method-assign]
    frame.unpersist = original_unpersist  # type: ignore[method-assign]
    frame.persist = original_persist  # type: ignore[method-assign]
    alternatives["a grouped count of one source day, no persist (Spark job floor)"] = median_of(spark_count_only)

    # The write of one day's output (persisted first, as the task does), three ways: what Delta adds.
    from pyspark import StorageLevel

    scratch = Path(spec.target.location).parent / "_profile_scratch"
    output = spec.transform(spark.read.format("delta").load(spec.source.location).where(f"`{column}` = DATE '{day}'"))
    output = output.persist(StorageLevel.MEMORY_AND_DISK)
    output.count()
    counter = iter(range(1_000_000))
    alternatives["write one day's output as plain Parquet (no Delta: the Spark write job alone)"] = median_of(
        lambda: output.write.mode("overwrite").parquet(str(scratch / f"parquet-{next(counter)}"))
    )
    output.write.format("delta").partitionBy(column).save(str(scratch / "delta"))
    alternatives["blind Delta append of one day's output (write job + commit, no replaceWhere)"] = median_of(
        lambda: output.write.format("delta").mode("append").save(str(scratch / "delta"))
    )
    alternatives["Delta replaceWhere overwrite of that day (the task's write, alone)"] = median_of(
        lambda: (
            output.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"`{column}` = DATE '{day}'")
            .save(str(scratch / "delta"))
        )
    )
    output.unpersist()

    # Delta keeps a table's file list in its .crc only below allFilesInCrc.thresholdNumFiles (50 files, an
    # internal conf); above it, every commit makes the next write rebuild the snapshot (the "Compute
    # snapshot" jobs). The same 1-day chunks with the threshold raised (one priming chunk first):
    threshold_key = "spark.databricks.delta.allFilesInCrc.thresholdNumFiles"
    spark.conf.set(threshold_key, "100000")
    try:
        one_chunk(next_days(1))
        jobs.clear()
        crc_runs = [one_chunk(next_days(1)) for _ in range(max(3, args.repeats // 2))]
        results["crc_threshold_raised"] = {
            "conf": f"{threshold_key}=100000",
            "repeats": len(crc_runs),
            "median_s": {
                n: statistics.median(r.get(n, 0.0) for r in crc_runs) for n in sorted({n for r in crc_runs for n in r})
            },
            "spark_jobs": list(jobs),
        }
    finally:
        spark.conf.unset(threshold_key)

    # Warm, in one JVM: the whole range as the single read-all/overwrite-all job, as one chunk, and as two
    # chunks side by side (what the flow does at max_concurrency 2), median of 3 each.
    from concurrent.futures import ThreadPoolExecutor

    from prefect_backfill.partitions import parse_partition_key

    whole = [parse_partition_key(k, spec.grain) for k in available]
    half = len(whole) // 2

    def single_job() -> None:
        out = spec.transform(spark.read.format("delta").load(spec.source.location))
        out.write.format("delta").mode("overwrite").partitionBy(column).save(str(scratch / "single"))

    def one_whole_chunk() -> None:
        engine.process_chunk(spec, whole, commit_tag=f"profile whole {uuid.uuid4().hex[:8]}")

    def two_chunks() -> None:
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(engine.process_chunk, spec, part, f"profile half {i} {uuid.uuid4().hex[:8]}")
                for i, part in enumerate((whole[:half], whole[half:]))
            ]
            for future in futures:
                future.result()

    results["whole_range_s"] = {
        "days": len(whole),
        "single read-all/overwrite-all job": median_of(single_job, 3),
        "one chunk of every day (process_chunk)": median_of(one_whole_chunk, 3),
        "two chunks of half the days, side by side": median_of(two_chunks, 3),
    }
    results["alternatives_s"] = alternatives
    results["target_versions"] = DeltaTable(target).version()
    results["ok"] = True
    return results
