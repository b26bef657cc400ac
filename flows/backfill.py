"""The backfill flow: one deployment-friendly entry point (every parameter is JSON)."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.orchestrate import run_prepared
from prefect_backfill.request import BackfillRequest, prepare
from prefect_backfill.settings import get_settings
from tasks.partition import backfill_partition

__all__ = ["backfill"]


@flow(
    name="backfill",
    flow_run_name="{pipeline}-{start}-{end}",
    # The pool only caps threads; the run's own max_concurrency bounds partitions in flight.
    task_runner=ThreadPoolTaskRunner(max_workers=get_settings().max_workers),  # type: ignore[arg-type]
    persist_result=False,
)
def backfill(
    pipeline: str,
    start: str,
    end: str,
    reprocess: str = "missing",
    max_concurrency: int = 2,
    retries: int = 2,
    retry_delay_seconds: float = 5.0,
    exclude: list[str] | None = None,
    newest_first: bool = False,
    yes: bool = False,
    window_end: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any] | State[dict[str, Any]]:
    """Reprocess ``pipeline`` from ``start`` to ``end`` (inclusive), partition by partition.

    Args:
        pipeline: registered pipeline name (`backfill pipelines` lists them).
        start: first partition, inclusive (YYYY-MM-DD; YYYY-MM-DDTHH for hourly pipelines).
        end: last partition, inclusive.
        reprocess: `missing` (default: all not complete for the current version), `failed`, or `all`.
        max_concurrency: partitions in flight at once.
        retries: retries per partition for transient errors (exponential backoff with jitter).
        retry_delay_seconds: first retry delay; doubles each retry.
        exclude: partition keys to leave out.
        newest_first: run the newest partitions first.
        yes: confirm a range longer than the safety cap.
        window_end: stop starting partitions at this time of day ("06:00", in `timezone`) or instant
            (ISO timestamp); running partitions finish, the rest stays PENDING for the next run.
        timezone: IANA timezone of `window_end`.

    Ends Failed, naming every failed partition and the command that resumes, if any partition failed.
    """
    started = time.perf_counter()
    request = BackfillRequest.build(
        pipeline=pipeline,
        start=start,
        end=end,
        reprocess=reprocess,
        max_concurrency=max_concurrency,
        retries=retries,
        retry_delay_seconds=retry_delay_seconds,
        exclude=tuple(exclude or ()),
        newest_first=newest_first,
        yes=yes,
        window_end=window_end,
        timezone=timezone,
    )
    prepared = prepare(request)
    summary = run_prepared(prepared, backfill_partition, started)
    if summary.failed:
        raise BackfillFailedError(pipeline, summary.failed, prepared.resume_command)
    if summary.not_started:
        # Not a failure: the night is over. A named Completed state says so in the UI.
        return Completed(
            name="WindowClosed",
            message=f"window closed: {len(summary.not_started)} partitions remain; the next run resumes",
            data=summary.to_dict(),
        )
    return summary.to_dict()
