"""The Prefect task around one chunk (:mod:`prefect_backfill.executing` does the work): one task run
per chunk, named after its span, so the UI shows the backfill's progress chunk by chunk."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from prefect_backfill.executing import ChunkJob, run_job
from prefect_backfill.results import ChunkResult

__all__ = ["backfill_chunk"]


@task(
    name="backfill-chunk",
    task_run_name="partitions-{job.span}",
    cache_policy=NONE,  # per-partition cache records instead (prefect_backfill.caching)
    persist_result=False,
    retries=0,  # retried inside, per chunk and per piece, so a retry never redoes what completed
)
def backfill_chunk(job: ChunkJob) -> ChunkResult:
    """Consecutive partitions in one Spark job and one Delta commit, each recorded on its own.

    Ends Failed (:class:`~prefect_backfill.errors.ChunkFailedError`, carrying every partition's outcome) if
    any partition failed. After the job's deadline (the night window) nothing more starts; work cancelled at
    its hard stop (the window's end plus a grace period) goes back to PENDING: nothing of it was committed.
    """
    return run_job(job)
