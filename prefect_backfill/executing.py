"""Running one chunk: consecutive partitions in one engine job and one commit, recorded partition by
partition. The Prefect task (tasks/chunk.py) only wraps :class:`ChunkExecutor`; tests and benchmarks
drive it directly with any :class:`~prefect_backfill.engine.Engine`.

Per partition, exactly as if each had run alone: a RUNNING event per attempt, a COMPLETE event with its
own rows in/out and the chunk's commit version (and its cache record), or a FAILED event with its own
error. Failures are isolated by splitting:

- a check that names its partitions (an empty output, an empty source) fails exactly those; the rest
  of the chunk runs again without them;
- a transient error (engine/failures.py) is retried on the whole chunk first (backoff + jitter); a
  deterministic one, or one that persists, bisects the chunk, halves without retries, until the failing
  partitions stand alone; a partition alone gets the full retries before it is FAILED. Every good
  partition ends COMPLETE.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from prefect_backfill import stopping, window
from prefect_backfill.caching import PartitionCache
from prefect_backfill.cascade import Policy
from prefect_backfill.catalog import with_storage
from prefect_backfill.chunking import split_stretches
from prefect_backfill.engine import Engine, get_engine
from prefect_backfill.engine.failures import Failure, FailureKind, classify
from prefect_backfill.errors import ChunkFailedError, PartitionValidationError, one_line
from prefect_backfill.events import emit_partitions_completed, emit_partitions_failed
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.marking import mark_downstream
from prefect_backfill.partitions import parse_partition_key
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Status
from prefect_backfill.registry import get_pipeline
from prefect_backfill.results import ChunkResult, PartitionResult
from prefect_backfill.settings import get_settings
from prefect_backfill.traces import record_trace

__all__ = ["ChunkExecutor", "ChunkJob", "backoff_delay", "run_job"]


class ChunkJob(BaseModel):
    """One chunk's work order: identifiers and numbers only (never a SparkSession or a DataFrame), so
    the task runs in a thread, another process or a Dask worker alike, and Prefect records it as the task
    run's parameters. Each process resolves the pipeline and the engine itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str
    partitions: tuple[str, ...]
    span: str  # the task run's name: "2024-01-01..2024-01-07"
    fingerprint: str  # the transform version planned; a change mid-run fails the chunk
    target_id: str
    ledger_path: str
    run_id: str
    source_digests: tuple[str | None, ...] = ()  # per partition, from the plan's read of the source log
    source_version: int | None = None  # the version of the source log that read was of
    source_rows: tuple[int | None, ...] = ()  # likewise; None where the log has no statistics
    source_bytes: tuple[int | None, ...] = ()  # likewise, the source partitions' bytes
    retries: int = 2
    retry_delay_seconds: float = 5.0
    deadline: datetime | None = None  # the night window: nothing more starts after it
    hard_stop: datetime | None = None  # the window's end plus its grace: work still running is cancelled
    result_storage: str | None = None  # where cache records go
    # Where catalog-named tables' files are, as the run found them (prefect_backfill.catalog): a worker
    # reads the target's log there without asking the metastore (or Spark) again.
    source_storage: str | None = None
    target_storage: str | None = None
    cascade: Policy | None = None  # the run's override of every downstream edge's policy


def backoff_delay(base: float, attempt: int) -> float:
    """The wait before retry ``attempt`` (1-based): exponential, with up to 50 % jitter so that chunks
    failing together do not retry together. The one retry policy of the package."""
    return float(base * 2 ** (attempt - 1) * (1 + random.uniform(0, 0.5)))


def _pipeline(pipeline: str, fingerprint: str) -> Pipeline:
    spec = get_pipeline(pipeline)
    if spec.fingerprint != fingerprint:
        raise PartitionValidationError(
            f"pipeline {pipeline} changed while the backfill ran (version {spec.fingerprint}, planned "
            f"{fingerprint}): start a new run"
        )
    return spec


@dataclass
class ChunkExecutor:
    """Runs one chunk (and, on failure, its pieces), recording every partition's outcome."""

    spec: Pipeline
    fingerprint: str
    ledger: Ledger
    run_id: str
    engine: Engine
    target_id: str
    digests: dict[str, str | None]
    cache: PartitionCache | None
    retries: int
    delay: float
    deadline: datetime | None
    hard_stop: datetime | None = None
    sleep: Callable[[float], None] = stopping.pause  # a retry's backoff ends at a stop signal
    source_rows: dict[str, int] = field(default_factory=dict)  # from the plan's read of the log (may be partial)
    source_bytes: dict[str, int] = field(default_factory=dict)  # likewise
    source_version: int | None = None  # the source version ``digests`` were read at
    cascade: Policy | None = None  # the run's cascade policy for every downstream edge (None: each edge's own)
    completed: list[PartitionResult] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)

    @classmethod
    def for_job(cls, job: ChunkJob, engine: Engine | None = None) -> ChunkExecutor:
        """The executor of ``job`` in this process (its pipeline checked against the planned version)."""
        keys = job.partitions
        return cls(
            spec=with_storage(_pipeline(job.pipeline, job.fingerprint), job.source_storage, job.target_storage),
            fingerprint=job.fingerprint,
            ledger=Ledger(job.ledger_path),
            run_id=job.run_id,
            engine=engine or get_engine(),
            target_id=job.target_id,
            digests=dict(zip(keys, job.source_digests or (None,) * len(keys), strict=True)),
            source_rows={
                k: n for k, n in zip(keys, job.source_rows or (None,) * len(keys), strict=True) if n is not None
            },
            cache=PartitionCache(job.result_storage) if job.result_storage else None,
            source_version=job.source_version,
            source_bytes={
                k: n for k, n in zip(keys, job.source_bytes or (None,) * len(keys), strict=True) if n is not None
            },
            retries=job.retries,
            delay=job.retry_delay_seconds,
            deadline=job.deadline,
            hard_stop=job.hard_stop,
            cascade=job.cascade,
        )

    def event(self, key: str, status: Status, attempt: int, started: datetime, **extra: Any) -> LedgerEvent:
        return LedgerEvent(
            run_id=self.run_id,
            pipeline=self.spec.name,
            partition=key,
            status=status,
            version=self.spec.version,
            fingerprint=self.fingerprint,
            attempt=attempt,
            started_at=started,
            source_digest=self.digests.get(key),
            source_version=self.source_version,
            target_id=self.target_id,
            **extra,
        )

    def closed(self) -> bool:
        """Start nothing more: the window closed, or a signal asked the run to stop."""
        return stopping.requested() is not None or (self.deadline is not None and window.clock() >= self.deadline)

    def stopped(self) -> bool:
        """What fails now was cancelled on purpose: the window's hard stop, or a stop signal."""
        return stopping.requested() is not None or (self.hard_stop is not None and window.clock() >= self.hard_stop)

    def run(self, keys: Sequence[str], retries: int) -> None:
        """Process ``keys`` (consecutive partitions) as one chunk, splitting on failure."""
        attempt = 1
        while True:
            if self.closed():  # the window closed (or was passed while we waited): leave them PENDING
                self._back_to_pending(keys, attempt)
                return
            started = datetime.now(UTC)
            try:
                self._attempt(keys, attempt, started)
                return
            except PartitionValidationError as exc:  # the same input cannot give another answer
                culprits = [k for k in keys if k in exc.partitions]
                if len(keys) == 1 or set(culprits) == set(keys):
                    self._fail(keys, exc, attempt, started)
                elif culprits:
                    self._fail(culprits, exc, attempt, started)
                    rest = [k for k in keys if k not in culprits]
                    for piece in split_stretches([parse_partition_key(k, self.spec.grain) for k in rest]):
                        self.run([p.key for p in piece], self.retries if len(piece) == 1 else 0)
                else:
                    self._bisect(keys)
                return
            except Exception as exc:
                # The window's hard stop or a stop signal (whose SIGTERM may have taken the JVM down with it):
                # nothing was committed; never retried.
                if self.stopped():
                    self._back_to_pending(keys, attempt)
                    return
                failure = classify(exc)
                if failure.kind is FailureKind.CANCELLED:  # a cancel in the Spark UI, too
                    self._back_to_pending(keys, attempt)
                    return
                if failure.kind is FailureKind.ENGINE_DOWN:  # splitting or retrying a dead JVM multiplies failures
                    self._fail(keys, exc, attempt, started, failure)
                    return
                if failure.retried and attempt <= retries:
                    self.sleep(backoff_delay(self.delay, attempt))
                    attempt += 1
                    continue
                # Deterministic (the same input fails the same way: no retry), or out of retries: isolate
                # the failing partitions by halves, the halves without retries.
                if len(keys) == 1:
                    self._fail(keys, exc, attempt, started, failure)
                else:
                    self._bisect(keys)
                return

    def _bisect(self, keys: Sequence[str]) -> None:
        middle = len(keys) // 2
        for half in (keys[:middle], keys[middle:]):
            self.run(half, self.retries if len(half) == 1 else 0)

    def _attempt(self, keys: Sequence[str], attempt: int, started: datetime) -> None:
        # Not waited for: the writer commits them while Spark works; losing them would cost nothing.
        self.ledger.record([self.event(k, Status.RUNNING, attempt, started) for k in keys], wait=False)
        parts = [parse_partition_key(k, self.spec.grain) for k in keys]
        span = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
        tag = f"prefect-backfill run={self.run_id} pipeline={self.spec.name} partitions={span}"
        work = time.perf_counter()
        known = {k: self.source_rows[k] for k in keys if k in self.source_rows}
        size = sum(self.source_bytes[k] for k in keys) if all(k in self.source_bytes for k in keys) else None
        outcome = self.engine.process_chunk(
            self.spec, parts, commit_tag=tag, rows_in=known if len(known) == len(keys) else None, source_bytes=size
        )
        each = (time.perf_counter() - work) / len(keys)
        # Downstream partitions that read these become STALE before these become COMPLETE (prefect_backfill.marking).
        mark_downstream(self.spec, self.run_id, keys, get_settings(), self.cascade)
        finished = datetime.now(UTC)
        booked = time.perf_counter()
        events = []
        for key in keys:
            rows_in, rows_out = outcome.rows[key]
            events.append(
                self.event(
                    key,
                    Status.COMPLETE,
                    attempt,
                    started,
                    finished_at=finished,
                    rows_in=rows_in,
                    rows_out=rows_out,
                    duration_s=each,
                    table_version=outcome.table_version,
                    replaced_version=None if outcome.table_version is None else outcome.table_version - 1,
                    rows_before=outcome.rows_before.get(key),
                    diff=outcome.diffs.get(key),
                    target_digest=outcome.target_digests.get(key),
                    shape=outcome.shape,
                )
            )
        marked_meanwhile = self._marks_since(keys, started) if self.spec.upstream else []
        self.ledger.record(events, wait=False)
        if marked_meanwhile:  # recorded after the COMPLETE: the mark stays the latest word
            self.ledger.record(marked_meanwhile, wait=False)
        # What recording costs per partition (queueing its events; the commit follows in the writer's thread).
        bookkeeping = (time.perf_counter() - booked) / len(keys)
        results = [
            PartitionResult(
                pipeline=self.spec.name,
                partition=e.partition,
                fingerprint=self.fingerprint,
                rows_in=e.rows_in or 0,
                rows_out=e.rows_out or 0,
                table_version=outcome.table_version,
                duration_s=each,
                bookkeeping_s=bookkeeping,
                run_id=self.run_id,
                source_digest=self.digests.get(e.partition),
                target_id=self.target_id,
                target_digest=e.target_digest,
            )
            for e in events
        ]
        emit_partitions_completed(self.spec, self.run_id, attempt, keys, outcome, duration_s=each * len(keys))
        self.completed.extend(results)
        if self.cache is not None:
            for result in results:
                self.cache.put(result)

    def _marks_since(self, keys: Sequence[str], started: datetime) -> list[LedgerEvent]:
        """Marks an upstream run made on ``keys`` while this attempt computed them (it may have read the
        upstream before the change), as events to record again after this attempt's COMPLETE: the partitions
        stay due. A mark made in the few milliseconds between this read and the COMPLETE is not seen."""
        current = self.ledger.current(self.spec.name)
        return [
            LedgerEvent(
                run_id=state.run_id,
                pipeline=self.spec.name,
                partition=key,
                status=Status.STALE,
                version=self.spec.version,
                fingerprint=self.fingerprint,
                upstream=state.upstream,
            )
            for key in keys
            if (state := current.get(key)) is not None and state.status is Status.STALE and state.updated_at >= started
        ]

    def _fail(
        self, keys: Sequence[str], exc: BaseException, attempt: int, started: datetime, failure: Failure | None = None
    ) -> None:
        error = failure.cause if failure is not None else one_line(exc)
        if not isinstance(exc, PartitionValidationError):  # a check's failure is its own whole story
            record_trace(self.run_id, keys, exc)
        if failure is not None and failure.kind is FailureKind.ENGINE_DOWN:
            error = (
                f"the Spark driver is gone ({error}); the run's other chunks fail the same way. If it ran out "
                "of memory (its log says OutOfMemoryError), lower --chunk-mb or raise BACKFILL_SPARK_DRIVER_MEMORY, "
                "then run the same command again"
            )
        finished = datetime.now(UTC)
        duration = (finished - started).total_seconds()
        events, failed = [], []
        for key in keys:
            check, message = exc.detail(key) if isinstance(exc, PartitionValidationError) else (None, error)
            if message == str(exc):  # no detail of its own: the exception's line
                message = error
            events.append(
                self.event(
                    key,
                    Status.FAILED,
                    attempt,
                    started,
                    finished_at=finished,
                    duration_s=duration,
                    error=message,
                    check_name=check,
                )
            )
            failed.append((key, message))
        self.ledger.record(events, wait=False)
        self.failed.extend(failed)
        emit_partitions_failed(self.spec, self.run_id, attempt, keys, exc, error)

    def _back_to_pending(self, keys: Sequence[str], attempt: int) -> None:
        now = datetime.now(UTC)
        self.ledger.record([self.event(k, Status.PENDING, attempt, now) for k in keys], wait=False)
        self.not_started.extend(keys)


def run_job(job: ChunkJob, engine: Engine | None = None) -> ChunkResult:
    """Run ``job`` and say what became of each partition; raises :class:`ChunkFailedError` (carrying
    every partition's outcome) if any partition failed. Every COMPLETE is durable before it returns."""
    unit = ChunkExecutor.for_job(job, engine)
    try:
        unit.run(job.partitions, job.retries)
    finally:
        unit.ledger.flush()
    result = ChunkResult(tuple(unit.completed), tuple(unit.failed), tuple(unit.not_started))
    if unit.failed:
        raise ChunkFailedError(result)
    return result
