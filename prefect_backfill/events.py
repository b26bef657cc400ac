"""Prefect events of a backfill: what an automation, the UI's event feed or another system can react to.

- ``prefect-backfill.partition.completed``: after the COMPLETE events of a commit; its resource is the
  partition, or the span ``first..last`` of the consecutive partitions that one commit wrote;
- ``prefect-backfill.partition.failed``: a partition is FAILED by any error but a check; one partition;
- ``prefect-backfill.partition.check-failed``: a partition is FAILED by a check before commit (a
  ``PartitionValidationError``); one partition, the check's name as label ``prefect-backfill.check``;
- ``prefect-backfill.run.finished``: the backfill flow's summary is built; the pipeline, with counts and
  the outcome (label ``prefect-backfill.outcome``).

Every event relates the pipeline (``prefect-backfill.pipeline.<name>``, role ``pipeline``); Prefect itself
adds the flow run, task run, flow, deployment, work pool/queue and tags of the run it is emitted in (the
events worker reads them from the run context captured at ``emit_event`` time), which is what lets
``deployments/setup.py``'s automation pause *the deployment whose run failed a check*. A FAILED partition
emits exactly one of ``failed`` and ``check-failed``.

**One event per commit for completions, one per partition for failures**, because of what they cost and
what they are for (measured on this 2-core machine, Prefect 3.9.1):

- ``emit_event`` never blocks on the network: it validates the event and puts it on the process's events
  queue (0.05-0.14 ms a call; the first call of a process ~5 ms); one background thread sends the queue
  over a single websocket. So no event is a blocking request, with or without a server.
- The server's work is per event: a real ``prefect server start`` (SQLite) stored 400 events 0.58 s after
  they were emitted. A year of hourly partitions (8,784) as one event each would cost the server ~13 s
  and flood the event feed, where the same run's own task-run events number a few hundred (one task run
  per chunk). So a commit is one ``completed`` event whose resource is its span and whose payload lists
  every partition with its rows (and whose related resources name the first 50 partitions, so
  ``/events/filter`` on a partition's id finds it); a chunk of one partition gets exactly that
  partition's id.
- Failures are rare and acted upon one partition at a time (an automation ``for_each`` partition, the
  error of each), so they are one event each; even a chunk of 400 failed at once (a dead Spark driver)
  costs ~40 ms of queueing.
- Without a reachable server the calls still cost microseconds, but the events are lost and the process
  waits ~7 s at exit while the worker gives up; a run cannot work without its server anyway.
- **Outside a Prefect run** with no ``PREFECT_API_URL``, ``emit_event`` would start a temporary server
  (8.9 s measured) just to send one event: :func:`emit` sends nothing there (tests, scripts calling the
  engine directly). Inside a run on the embedded server it reuses that run's server.

Emitting never fails a partition: every error is logged at debug level and swallowed. Cache-served
partitions (``cached=True`` in the ledger) wrote nothing and emit no ``completed`` event; the
``run.finished`` event counts them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefect_backfill.errors import PartitionValidationError

if TYPE_CHECKING:
    from prefect_backfill.engine import ChunkOutcome
    from prefect_backfill.pipeline import Pipeline
    from prefect_backfill.results import BackfillSummary

__all__ = [
    "CHECK_FAILED",
    "COMPLETED",
    "FAILED",
    "MARKED_STALE",
    "RUN_FINISHED",
    "BackfillEvent",
    "check_name",
    "emit",
    "emit_partitions_completed",
    "emit_partitions_failed",
    "emit_run_finished",
    "outcome",
    "partition_failed",
    "partition_resource_id",
    "partitions_completed",
    "partitions_marked_stale",
    "pipeline_resource_id",
    "run_finished",
]

COMPLETED = "prefect-backfill.partition.completed"
FAILED = "prefect-backfill.partition.failed"
CHECK_FAILED = "prefect-backfill.partition.check-failed"
RUN_FINISHED = "prefect-backfill.run.finished"
MARKED_STALE = "prefect-backfill.partition.marked-stale"

#: Partitions named as related resources of one ``completed`` event. Prefect's server accepts 100 related
#: resources per event, and the run context adds up to ~10 (flow run, task run, flow, deployment, work
#: queue, work pool, tags); the payload always lists every partition.
MAX_RELATED_PARTITIONS = 50

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillEvent:
    """One event as Prefect's ``emit_event`` takes it; built by pure functions, so it can be tested
    (and read in the README) without a server."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]
    related: tuple[dict[str, str], ...] = field(default=())


def pipeline_resource_id(pipeline: str) -> str:
    return f"prefect-backfill.pipeline.{pipeline}"


def partition_resource_id(pipeline: str, key: str) -> str:
    """``prefect-backfill.partition.<pipeline>.<key>``; ``key`` may be a span ``first..last``."""
    return f"prefect-backfill.partition.{pipeline}.{key}"


def _pipeline_related(pipeline: str) -> dict[str, str]:
    return {
        "prefect.resource.id": pipeline_resource_id(pipeline),
        "prefect.resource.role": "pipeline",
        "prefect.resource.name": pipeline,
    }


def _partition_resource(pipeline: str, key: str, **labels: str) -> dict[str, str]:
    return {
        "prefect.resource.id": partition_resource_id(pipeline, key),
        "prefect.resource.name": f"{pipeline} {key}",
        "prefect-backfill.pipeline": pipeline,
        "prefect-backfill.partition": key,
        **labels,
    }


def check_name(exc: BaseException) -> str | None:
    """The name of the check ``exc`` failed, or None if it is not a check failure.

    Every ``PartitionValidationError`` is a failed check (the same input cannot give another answer):
    its ``check`` (a name, or an object with a ``name``; the engine's built-in checks name theirs on their
    class, :mod:`prefect_backfill.errors`), any other one ``validation``."""
    if not isinstance(exc, PartitionValidationError):
        return None
    check: object = exc.check
    if check is None:
        return "validation"
    return str(getattr(check, "name", check))


def partitions_completed(
    pipeline: str,
    rows: Mapping[str, tuple[int, int]],
    *,
    run_id: str,
    version: str,
    attempt: int,
    table_version: int | None,
    duration_s: float,
) -> BackfillEvent:
    """The one event of a commit: ``rows`` maps each partition it wrote (in order) to (rows in, rows out)."""
    keys = list(rows)
    span = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    related = [_pipeline_related(pipeline)]
    if len(keys) > 1:
        related += [
            {"prefect.resource.id": partition_resource_id(pipeline, k), "prefect.resource.role": "partition"}
            for k in keys[:MAX_RELATED_PARTITIONS]
        ]
    return BackfillEvent(
        event=COMPLETED,
        resource=_partition_resource(pipeline, span, **{"prefect-backfill.partitions": str(len(keys))}),
        payload={
            "pipeline": pipeline,
            "run_id": run_id,
            "version": version,
            "attempt": attempt,
            "table_version": table_version,
            "replaced_version": None if table_version is None else table_version - 1,
            "count": len(keys),
            "rows_in": sum(i for i, _ in rows.values()),
            "rows_out": sum(o for _, o in rows.values()),
            "duration_s": round(duration_s, 3),
            "partitions": [{"partition": k, "rows_in": rows[k][0], "rows_out": rows[k][1]} for k in keys],
        },
        related=tuple(related),
    )


def partitions_marked_stale(
    downstream: str, upstream: str, pulled: Mapping[str, Sequence[str]], *, run_id: str
) -> BackfillEvent:
    """The one event of an upstream commit that made downstream partitions STALE: ``pulled`` maps each
    downstream partition (in order) to the upstream partitions of the commit it reads."""
    keys = list(pulled)
    span = keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"
    related = [
        _pipeline_related(downstream),
        {**_pipeline_related(upstream), "prefect.resource.role": "upstream-pipeline"},
    ]
    related += [
        {"prefect.resource.id": partition_resource_id(downstream, k), "prefect.resource.role": "partition"}
        for k in keys[:MAX_RELATED_PARTITIONS]
    ]
    return BackfillEvent(
        event=MARKED_STALE,
        resource=_partition_resource(downstream, span, **{"prefect-backfill.partitions": str(len(keys))}),
        payload={
            "pipeline": downstream,
            "upstream": upstream,
            "run_id": run_id,
            "count": len(keys),
            "partitions": [{"partition": k, "because": list(pulled[k])} for k in keys],
        },
        related=tuple(related),
    )


def partition_failed(
    pipeline: str, key: str, exc: BaseException, error: str, *, run_id: str, version: str, attempt: int
) -> BackfillEvent:
    """``check-failed`` if ``exc`` is a failed check (the check's name as a resource label, so an
    automation can match one check), else ``failed``; ``error`` is the ledger's one-line error."""
    check = check_name(exc)
    if isinstance(exc, PartitionValidationError) and key in exc.details:  # this partition's own check and line
        check, error = exc.details[key][0] or check, exc.details[key][1]
    labels = {} if check is None else {"prefect-backfill.check": check}
    payload: dict[str, Any] = {
        "pipeline": pipeline,
        "partition": key,
        "run_id": run_id,
        "version": version,
        "attempt": attempt,
        "error": error,
        "error_type": type(exc).__name__,
    }
    if check is not None:
        payload["check"] = check
    return BackfillEvent(
        event=FAILED if check is None else CHECK_FAILED,
        resource=_partition_resource(pipeline, key, **labels),
        payload=payload,
        related=(_pipeline_related(pipeline),),
    )


def outcome(summary: BackfillSummary) -> str:
    """``failed`` (some partition failed: the flow ends Failed), ``stopped-at-canary`` (rejected or not
    answered at the canary gate), ``window-closed`` (partitions remain for the next night), ``held``
    (partitions left to another live run), else ``completed``."""
    if summary.failed:
        return "failed"
    if summary.gate is not None:
        return "stopped-at-canary"
    if summary.not_started:
        return "window-closed"
    if summary.held:
        return "held"
    return "completed"


def run_finished(summary: BackfillSummary) -> BackfillEvent:
    """The run's counts and outcome, with the pipeline as the resource (the outcome as a label too, so
    an automation can match ``failed`` runs alone); at most 20 failed partitions are named."""
    result = outcome(summary)
    return BackfillEvent(
        event=RUN_FINISHED,
        resource={
            "prefect.resource.id": pipeline_resource_id(summary.pipeline),
            "prefect.resource.name": summary.pipeline,
            "prefect-backfill.pipeline": summary.pipeline,
            "prefect-backfill.outcome": result,
        },
        payload={
            "pipeline": summary.pipeline,
            "run_id": summary.run_id,
            "start": summary.start,
            "end": summary.end,
            "outcome": result,
            "total": summary.total,
            "completed": len(summary.completed),
            "cached": len(summary.cached),
            "skipped": summary.skipped,
            "failed": len(summary.failed),
            "not_started": len(summary.not_started),
            "held": len(summary.held),
            "rows_written": summary.rows_written,
            "duration_s": round(summary.duration_s, 3),
            "failed_partitions": [{"partition": k, "error": e} for k, e in summary.failed[:20]],
        },
    )


def _in_a_run() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def emit(events: Iterable[BackfillEvent]) -> int:
    """Hand ``events`` to Prefect's events queue; returns how many it took. Never raises and never
    blocks on the network; outside a Prefect run it sends nothing (see the module's docstring)."""
    sent = 0
    try:
        if not _in_a_run():
            return 0
        from prefect.events import emit_event

        for e in events:
            if emit_event(e.event, resource=e.resource, related=list(e.related), payload=e.payload) is not None:
                sent += 1
    except Exception:  # an event is never worth a partition
        _log.debug("could not emit backfill events", exc_info=True)
    return sent


def emit_partitions_completed(
    pipeline: Pipeline,
    run_id: str,
    attempt: int,
    keys: Sequence[str],
    outcome: ChunkOutcome,
    duration_s: float,
) -> int:
    """One ``completed`` event for the partitions ``keys`` that one commit (``outcome``) wrote."""
    try:
        event = partitions_completed(
            pipeline.name,
            {k: outcome.rows[k] for k in keys},
            run_id=run_id,
            version=pipeline.version,
            attempt=attempt,
            table_version=outcome.table_version,
            duration_s=duration_s,
        )
    except Exception:
        _log.debug("could not build the completed event", exc_info=True)
        return 0
    return emit([event])


def emit_partitions_failed(
    pipeline: Pipeline, run_id: str, attempt: int, keys: Sequence[str], exc: BaseException, error: str
) -> int:
    """One ``failed`` or ``check-failed`` event per partition in ``keys``, all failed by ``exc`` (``error``:
    the one line the ledger records)."""
    try:
        built = [
            partition_failed(pipeline.name, k, exc, error, run_id=run_id, version=pipeline.version, attempt=attempt)
            for k in keys
        ]
    except Exception:
        _log.debug("could not build the failed events", exc_info=True)
        return 0
    return emit(built)


def emit_run_finished(summary: BackfillSummary) -> int:
    """The ``run.finished`` event of the backfill flow whose summary this is."""
    try:
        event = run_finished(summary)
    except Exception:
        _log.debug("could not build the run.finished event", exc_info=True)
        return 0
    return emit([event])
