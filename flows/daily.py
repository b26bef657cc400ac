"""The daily pipeline: the same per-partition work as a backfill, for the latest closed partition.

It is a backfill of one partition with ``reprocess="all"``: yesterday's source may have received late
data since an earlier attempt, and the overwrite is idempotent anyway.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import timedelta

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_backfill import window
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.orchestrate import run_prepared
from prefect_backfill.partitions import Grain, parse_bound
from prefect_backfill.preparing import prepare
from prefect_backfill.registry import get_pipeline
from prefect_backfill.request import BackfillRequest
from prefect_backfill.results import BackfillSummary
from tasks.chunk import backfill_chunk

__all__ = ["daily", "previous_partition"]


def previous_partition(grain: Grain, now_key: str | None = None) -> str:
    """The latest partition that has closed: yesterday, the previous hour, or last month."""
    now = parse_bound(now_key, grain) if now_key else window.clock().replace(tzinfo=None)
    current = parse_bound(now, grain)
    if grain is Grain.HOUR:
        return (current - timedelta(hours=1)).strftime("%Y-%m-%dT%H")
    if grain is Grain.DAY:
        return (current - timedelta(days=1)).strftime("%Y-%m-%d")
    return (current.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


@flow(
    name="daily",
    flow_run_name="{pipeline}-daily",
    task_runner=ThreadPoolTaskRunner(max_workers=2),  # type: ignore[arg-type]
    persist_result=False,
)
def daily(pipeline: str, partition: str | None = None, retries: int = 3) -> BackfillSummary | State[BackfillSummary]:
    """Process ``partition`` of ``pipeline`` (default: the latest closed one, e.g. yesterday)."""
    started = time.perf_counter()
    spec = get_pipeline(pipeline)
    key = partition or previous_partition(spec.grain)
    request = BackfillRequest.build(pipeline=pipeline, start=key, end=key, reprocess="all", retries=retries)
    # Beside the backfills' cap: a night-long backfill holding every slot must not make the daily run wait.
    prepared = replace(prepare(request), beside_cap=True)
    summary = run_prepared(prepared, backfill_chunk, started)
    if summary.failed:
        raise BackfillFailedError(pipeline, summary.failed, prepared.resume_command)
    if summary.held:  # a live backfill is writing that partition: not done by this run, never a plain Completed
        return Completed(
            name="PartlyHeld",
            message=f"{key} is held by a live backfill run; run the daily again when it ends",
            data=summary,
        )
    return summary
