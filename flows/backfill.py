"""The backfill flow: one deployment-friendly entry point (every parameter is JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect import flow
from prefect.client.schemas.objects import State
from prefect.states import Cancelled, Completed

from prefect_backfill import phases
from prefect_backfill.engine import jvm_output
from prefect_backfill.errors import BackfillFailedError, CanaryStoppedError, RunStoppedError
from prefect_backfill.orchestrate import run_prepared
from prefect_backfill.preparing import handed_over, prepare
from prefect_backfill.request import BackfillRequest
from prefect_backfill.results import BackfillSummary
from prefect_backfill.run_state import FLOW_NAME
from prefect_backfill.traces import trace_path
from tasks.chunk import backfill_chunk

__all__ = ["backfill"]

P = ParamSpec("P")
R = TypeVar("R")


def _run_name() -> str:
    """``demo_orders-2024-01-01-2024-06-30``, or ``demo_orders-3-partitions`` for an explicit list."""
    from prefect.runtime import flow_run

    params = flow_run.parameters
    if params.get("partitions"):
        return f"{params['pipeline']}-{len(params['partitions'])}-partitions"
    return f"{params['pipeline']}-{params.get('start')}-{params.get('end')}"


def _parameter_docs(fn: Callable[P, R]) -> Callable[P, R]:
    """Append the request's help to the flow's docstring as its ``Args:``: Prefect shows them on the
    deployment's form and in its parameter schema, and the CLI's ``--help`` shows the same words."""
    fn.__doc__ = f"{fn.__doc__ or ''}\n{BackfillRequest.args_doc(indent='    ')}"
    return fn


@flow(
    name=FLOW_NAME,
    flow_run_name=_run_name,
    # The chunks' task runner (thread pool or Dask, by BACKFILL_TASK_RUNNER) is chosen when a run
    # starts (orchestrate.run_prepared), not here at import; the run's max_concurrency bounds chunks in
    # flight either way.
    persist_result=False,
)
@_parameter_docs
def backfill(
    pipeline: str,
    start: str | None = None,
    end: str | None = None,
    partitions: list[str] | None = None,
    reprocess: str = "missing",
    max_concurrency: int = 2,
    retries: int = 2,
    retry_delay_seconds: float = 5.0,
    exclude: list[str] | None = None,
    newest_first: bool = False,
    chunk_mb: float = 1024.0,
    chunk_partitions: int = 400,
    yes: bool = False,
    window_end: str | None = None,
    timezone: str = "UTC",
    canary: int = 0,
    canary_partitions: list[str] | None = None,
    approve: bool = False,
    canary_timeout_s: int = 3600,
    cascade: str | None = None,
) -> BackfillSummary | State[BackfillSummary]:
    """Reprocess ``pipeline`` from ``start`` to ``end`` (inclusive), partition by partition.

    Ends Failed, naming every failed partition and the command that resumes, if any partition failed.
    """
    given = {name: value for name, value in locals().items() if value is not None}  # the parameters, by name
    phases.mark("flow body")
    started = time.perf_counter()
    request = BackfillRequest.build(**given)  # lists become tuples; None means the field's default
    prepared = handed_over(request) or prepare(request)  # the plan the CLI printed, when it started us
    summary = run_prepared(prepared, backfill_chunk, started)
    if summary.stopped is not None:
        # Ctrl-C, or the worker cancelling this flow run: ended on purpose, resumable, not a crash.
        done = len(summary.completed) + len(summary.cached)
        message = (
            f"stopped by {summary.stopped}: {done} partition(s) complete, {len(summary.not_started)} left PENDING, "
            f"{len(summary.failed)} failed; the same command resumes: {prepared.resume_command}"
        )
        stopped = RunStoppedError(message, summary, summary.stop_code or 1)
        return Cancelled(message=message, data=stopped)
    if summary.failed:
        traces = trace_path(summary.run_id)
        spark_log = jvm_output.current_log()
        raise BackfillFailedError(
            pipeline,
            summary.failed,
            prepared.resume_command,
            str(traces) if traces.exists() else None,
            str(spark_log) if spark_log and spark_log.exists() else None,
        )
    if summary.gate is not None:
        raise CanaryStoppedError(
            f"stopped at the canary gate, {summary.gate}: {len(summary.completed)} canary partition(s) written "
            f"(see `backfill diff {pipeline}`; `backfill undo {pipeline} --run {summary.run_id}` restores them), "
            f"{len(summary.not_started)} left PENDING; the same command runs new canaries: {prepared.resume_command}"
        )
    if summary.held:
        # Not this run's to write (another live run holds them), but not done either: never a plain green
        # Completed. A named state says so in the UI; the CLI exits 4.
        return Completed(
            name="PartlyHeld",
            message=f"{len(summary.held)} partition(s) were left to another live run; rerun when it ends: "
            f"{prepared.resume_command}",
            data=summary,
        )
    if summary.not_started:
        # Not a failure: the night is over. A named Completed state says so in the UI.
        return Completed(
            name="WindowClosed",
            message=f"window closed: {len(summary.not_started)} partitions remain; the next run resumes",
            data=summary,
        )
    return summary
