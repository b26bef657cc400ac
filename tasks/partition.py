"""The per-partition unit: record RUNNING → read → transform → validate → overwrite → record result,
and the batch task that runs several such units in one task run (long hourly ranges).

The tasks take only JSON-friendly identifiers (never a SparkSession or a DataFrame), so their inputs
hash into a cache key and they run in a thread, another process or a Dask worker alike; each process
resolves the pipeline from the registry and the engine (Spark session) lazily.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import task_run as runtime_task_run
from prefect.tasks import exponential_backoff
from prefect.transactions import get_transaction

from prefect_backfill import window
from prefect_backfill.caching import BatchCachePolicy, PartitionCachePolicy
from prefect_backfill.engine import Engine, get_engine
from prefect_backfill.errors import BatchFailedError, PartitionValidationError
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.partitions import parse_partition_key
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Status
from prefect_backfill.registry import get_pipeline
from prefect_backfill.results import BatchResult, PartitionResult, one_line

__all__ = ["backfill_batch", "backfill_partition", "is_transient"]


def is_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Retry everything except failed validations: rerunning the same input cannot fix those."""
    return not isinstance(state.data, PartitionValidationError)


def _pipeline(pipeline: str, fingerprint: str) -> Pipeline:
    spec = get_pipeline(pipeline)
    if spec.fingerprint != fingerprint:
        raise PartitionValidationError(
            f"pipeline {pipeline} changed while the backfill ran (version {spec.fingerprint}, planned "
            f"{fingerprint}): start a new run"
        )
    return spec


@dataclass(frozen=True)
class _Unit:
    """Where one partition's events go; ``wait`` says whether COMPLETE/FAILED wait for their commit."""

    spec: Pipeline
    fingerprint: str
    ledger: Ledger
    run_id: str
    engine: Engine
    target_id: str
    wait: bool = True

    def run(self, partition: str, attempt: int, source_digest: str | None) -> PartitionResult:
        """Process one partition and record it. Raises what the engine raised (after recording FAILED)."""
        part = parse_partition_key(partition, self.spec.grain)
        started = datetime.now(UTC)

        def event(status: Status, **extra: Any) -> LedgerEvent:
            return LedgerEvent(
                run_id=self.run_id,
                pipeline=self.spec.name,
                partition=partition,
                status=status,
                version=self.spec.version,
                fingerprint=self.fingerprint,
                attempt=attempt,
                started_at=started,
                source_digest=source_digest,
                target_id=self.target_id,
                **extra,
            )

        t0 = time.perf_counter()
        # Not waited for: the writer commits it while Spark works; losing it would cost nothing.
        self.ledger.record([event(Status.RUNNING)], wait=False)
        bookkeeping = time.perf_counter() - t0
        work_start = time.perf_counter()
        tag = f"prefect-backfill run={self.run_id} pipeline={self.spec.name} partition={partition}"
        try:
            outcome = self.engine.process_partition(self.spec, part, commit_tag=tag)
        except Exception as exc:
            failed = event(
                Status.FAILED,
                finished_at=datetime.now(UTC),
                duration_s=time.perf_counter() - work_start,
                error=one_line(exc),
            )
            self.ledger.record([failed], wait=self.wait)
            raise
        duration = time.perf_counter() - work_start
        t1 = time.perf_counter()
        done = event(
            Status.COMPLETE,
            finished_at=datetime.now(UTC),
            rows_in=outcome.rows_in,
            rows_out=outcome.rows_out,
            duration_s=duration,
            table_version=outcome.table_version,
        )
        self.ledger.record([done], wait=self.wait)
        bookkeeping += time.perf_counter() - t1
        return PartitionResult(
            pipeline=self.spec.name,
            partition=partition,
            fingerprint=self.fingerprint,
            rows_in=outcome.rows_in,
            rows_out=outcome.rows_out,
            table_version=outcome.table_version,
            duration_s=duration,
            bookkeeping_s=bookkeeping,
            run_id=self.run_id,
            source_digest=source_digest,
            target_id=self.target_id,
        )


@task(
    name="backfill-partition",
    task_run_name="partition-{partition}",
    cache_policy=PartitionCachePolicy(),
    persist_result=True,
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=is_transient,
)
def backfill_partition(
    pipeline: str,
    partition: str,
    fingerprint: str,
    target_id: str,
    ledger_path: str,
    run_id: str,
    source_digest: str | None = None,
) -> PartitionResult:
    """One partition. ``source_digest`` (the source partition's files when planned) is part of the cache
    key and recorded with the result, so a later run can tell whether the source changed since."""
    unit = _Unit(_pipeline(pipeline, fingerprint), fingerprint, Ledger(ledger_path), run_id, get_engine(), target_id)
    return unit.run(partition, int(runtime_task_run.run_count or 1), source_digest)


@task(
    name="backfill-batch",
    task_run_name="batch-{partitions[0]}-{size}",
    cache_policy=BatchCachePolicy(),
    persist_result=True,
    retries=0,  # retried per partition inside, so a retry never redoes the partitions that succeeded
)
def backfill_batch(
    pipeline: str,
    partitions: list[str],
    size: int,
    fingerprint: str,
    target_id: str,
    ledger_path: str,
    run_id: str,
    source_digests: list[str | None] | None = None,
    retries: int = 2,
    retry_delay_seconds: float = 5.0,
    deadline: datetime | None = None,
) -> BatchResult:
    """Several partitions in one task run, in order, each overwritten and recorded on its own.

    Per partition: transient errors are retried with exponential backoff and jitter, validation errors
    are not; a failure never stops the rest of the batch. The ledger events are queued, not waited for,
    and flushed once at the end, so trivial partitions cost a fraction of a commit each. After
    ``deadline`` (the night window) no further partition of the batch starts.

    Ends Failed (:class:`BatchFailedError`, carrying every result) if any partition failed; a batch cut
    short by the window is not written to the cache, so a later identical batch runs in full.
    """
    unit = _Unit(
        _pipeline(pipeline, fingerprint), fingerprint, Ledger(ledger_path), run_id, get_engine(), target_id, wait=False
    )
    digests = source_digests or [None] * len(partitions)
    results: list[PartitionResult] = []
    failed: list[tuple[str, str]] = []
    not_started: list[str] = []
    try:
        for key, digest in zip(partitions, digests, strict=True):
            if deadline is not None and window.clock() >= deadline:
                not_started.append(key)
                continue
            outcome = _with_retries(
                lambda key=key, n=1, digest=digest: unit.run(key, n, digest), retries, retry_delay_seconds
            )
            if isinstance(outcome, PartitionResult):
                results.append(outcome)
            else:
                failed.append((key, outcome))
    finally:
        unit.ledger.flush()
    result = BatchResult(tuple(results), tuple(failed), tuple(not_started))
    if failed:
        raise BatchFailedError(result)
    if not_started:
        transaction = get_transaction()
        if transaction is not None:
            transaction.write_on_commit = False
    return result


def _with_retries(
    run: Callable[..., PartitionResult], retries: int, delay: float, sleep: Callable[[float], None] = time.sleep
) -> PartitionResult | str:
    """``run(n=attempt)`` until it succeeds, a validation error, or ``retries`` are spent; the error text
    of the last attempt otherwise."""
    attempt = 1
    while True:
        try:
            return run(n=attempt)
        except PartitionValidationError as exc:
            return one_line(exc)
        except Exception as exc:
            if attempt > retries:
                return one_line(exc)
            sleep(delay * 2 ** (attempt - 1) * (1 + random.uniform(0, 0.5)))
            attempt += 1
