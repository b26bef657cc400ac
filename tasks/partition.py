"""The per-partition unit: record RUNNING → read → transform → validate → overwrite → record result.

The task takes only JSON-friendly identifiers (never a SparkSession or a DataFrame), so its inputs
hash into a cache key and it can run in a thread, another process or a Dask worker alike; each
process resolves the pipeline from the registry and the Spark session lazily.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import task
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import task_run as runtime_task_run
from prefect.tasks import exponential_backoff

from prefect_backfill.caching import PartitionCachePolicy
from prefect_backfill.engine import get_engine
from prefect_backfill.errors import PartitionValidationError
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.partitions import parse_partition_key
from prefect_backfill.planning import Status
from prefect_backfill.registry import get_pipeline
from prefect_backfill.results import PartitionResult, one_line

__all__ = ["backfill_partition", "is_transient"]


def is_transient(task: Any, task_run: TaskRun, state: State[Any]) -> bool:
    """Retry everything except failed validations: rerunning the same input cannot fix those."""
    return not isinstance(state.data, PartitionValidationError)


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
) -> PartitionResult:
    spec = get_pipeline(pipeline)
    if spec.fingerprint != fingerprint:
        raise PartitionValidationError(
            f"pipeline {pipeline} changed while the backfill ran (version {spec.fingerprint}, planned "
            f"{fingerprint}): start a new run"
        )
    part = parse_partition_key(partition, spec.grain)
    ledger = Ledger(ledger_path)
    attempt = int(runtime_task_run.run_count or 1)
    started = datetime.now(UTC)

    def event(status: Status, **extra: Any) -> LedgerEvent:
        return LedgerEvent(
            run_id=run_id,
            pipeline=pipeline,
            partition=partition,
            status=status,
            version=spec.version,
            fingerprint=fingerprint,
            attempt=attempt,
            started_at=started,
            **extra,
        )

    t0 = time.perf_counter()
    # Not waited for: the writer commits it while Spark works; losing it would cost nothing.
    ledger.record([event(Status.RUNNING)], wait=False)
    bookkeeping = time.perf_counter() - t0
    work_start = time.perf_counter()
    try:
        outcome = get_engine().process_partition(
            spec, part, commit_tag=f"prefect-backfill run={run_id} pipeline={pipeline} partition={partition}"
        )
    except Exception as exc:
        ledger.record(
            [
                event(
                    Status.FAILED,
                    finished_at=datetime.now(UTC),
                    duration_s=time.perf_counter() - work_start,
                    error=one_line(exc),
                )
            ]
        )
        raise
    duration = time.perf_counter() - work_start
    t1 = time.perf_counter()
    ledger.record(
        [
            event(
                Status.COMPLETE,
                finished_at=datetime.now(UTC),
                rows_in=outcome.rows_in,
                rows_out=outcome.rows_out,
                duration_s=duration,
                table_version=outcome.table_version,
            )
        ]
    )
    bookkeeping += time.perf_counter() - t1
    return PartitionResult(
        pipeline=pipeline,
        partition=partition,
        fingerprint=fingerprint,
        rows_in=outcome.rows_in,
        rows_out=outcome.rows_out,
        table_version=outcome.table_version,
        duration_s=duration,
        bookkeeping_s=bookkeeping,
        run_id=run_id,
    )
