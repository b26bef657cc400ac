"""Fan the plan out over the flow's task runner, at most ``max_concurrency`` partitions in flight,
collect every final state, record what the tasks could not, and summarise.

Runner-agnostic on purpose: the limit is a semaphore released by each future's done-callback, so the
same loop bounds a thread pool or a Dask cluster, and (later) stops taking new partitions when a
night window closes, without ever cancelling one that has started.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from prefect_backfill import window
from prefect_backfill.coordination import claim, pipeline_cap
from prefect_backfill.engine import get_engine
from prefect_backfill.errors import BatchFailedError
from prefect_backfill.leases import LeaseTable, RunLease, lease_location
from prefect_backfill.ledger import LedgerEvent
from prefect_backfill.partitions import Partition
from prefect_backfill.planning import Plan, Status, held_keys
from prefect_backfill.reporting import ProgressReporter, artifact_key, publish_final_artifacts
from prefect_backfill.request import PreparedRun
from prefect_backfill.results import BackfillSummary, BatchResult, PartitionResult, one_line
from prefect_backfill.settings import get_settings
from prefect_backfill.tables import TableSnapshot
from prefect_backfill.window import resolve_deadline

__all__ = ["PartitionTasks", "batches", "run_prepared"]


@dataclass(frozen=True)
class PartitionTasks:
    """The Prefect tasks that do the work: one partition per task run, or a batch per task run."""

    partition: Any
    batch: Any


def run_prepared(prepared: PreparedRun, tasks: PartitionTasks, started: float | None = None) -> BackfillSummary:
    """Run ``prepared.plan`` with ``tasks`` inside the current flow.

    ``started`` is the flow's ``time.perf_counter()`` at entry, so the summary's duration includes
    validation and planning (reading the ledger).
    """
    logger = get_run_logger()
    started = time.perf_counter() if started is None else started
    pipeline, the_plan = prepared.pipeline, prepared.plan
    run_id = str(flow_run.id or uuid.uuid4())
    logger.info("%s", the_plan)

    out = _Outcome()
    if the_plan.to_run:
        target = get_engine().ensure_target(pipeline)
        the_plan = _claim_and_fan_out(prepared, tasks, target.table_id or pipeline.target.location, run_id, out)

    held = held_keys(the_plan)
    summary = BackfillSummary(
        pipeline=pipeline.name,
        run_id=run_id,
        start=prepared.partitions[0].key if prepared.partitions else "",
        end=prepared.partitions[-1].key if prepared.partitions else "",
        fingerprint=pipeline.fingerprint,
        total=the_plan.total,
        skipped=len(the_plan.skipped) - len(held),
        completed=tuple(out.completed),
        cached=tuple(out.cached),
        failed=tuple(out.failed),
        not_started=tuple(out.not_started),
        held=held,
        rows_written=out.rows_written,
        duration_s=time.perf_counter() - started,
        bookkeeping_s=tuple(out.bookkeeping),
    )
    logger.info("%s", summary)
    if held:
        logger.warning(
            "%d partition(s) are held by another live run and left to it: %s",
            len(held),
            "; ".join(sorted({s.reason for s in the_plan.skipped if s.partition.key in set(held)})),
        )
    if the_plan.to_run:
        publish_final_artifacts(
            pipeline.name, pipeline.fingerprint, prepared.partitions, prepared.ledger.current(pipeline.name)
        )
    create_markdown_artifact(
        key=artifact_key(pipeline.name, "summary"),
        markdown=_summary_markdown(summary, prepared.resume_command),
        description=f"{pipeline.name}: {len(out.failed)} failed of {the_plan.total}",
    )
    return summary


def _claim_and_fan_out(
    prepared: PreparedRun, tasks: PartitionTasks, target_id: str, run_id: str, out: _Outcome
) -> Plan:
    """Take a lease, claim what no live run holds and the cap's free slots, run it; the plan actually
    run (without the partitions left to others) is returned.

    The lease is renewed by a heartbeat for as long as this runs and ended when it returns or raises
    (Ctrl-C included); a killed process's lease dies with it (see :mod:`prefect_backfill.leases`)."""
    logger = get_run_logger()
    request, pipeline, ledger = prepared.request, prepared.pipeline, prepared.ledger
    settings = get_settings()

    def record_claims(mine: Plan) -> None:
        ledger.record(
            [
                LedgerEvent(run_id, pipeline.name, p.key, Status.PENDING, pipeline.version, pipeline.fingerprint)
                for p in mine.to_run
            ]
        )

    if not settings.coordinate:
        record_claims(prepared.plan)
        _fan_out(prepared, prepared.plan, tasks, target_id, run_id, request.max_concurrency, out)
        return prepared.plan
    leases = LeaseTable(lease_location(ledger.path))
    with RunLease(leases, run_id, pipeline.name) as lease:
        got = claim(
            leases,
            lease,
            prepared.plan,
            current=lambda: ledger.current(pipeline.name),
            record_claims=record_claims,
            wanted=request.max_concurrency,
            cap=pipeline_cap(pipeline.name, settings.pipeline_cap),
            timeout=settings.wait_timeout,
            say=logger.warning,
        )
        if got.slots and got.slots < request.max_concurrency:
            logger.info("the pipeline's shared cap allows %d partitions in flight for this run", got.slots)
        if got.plan.to_run:
            _fan_out(prepared, got.plan, tasks, target_id, run_id, got.slots, out, lost=lambda: lease.lost)
    return got.plan


@dataclass
class _Outcome:
    completed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    bookkeeping: list[float] = field(default_factory=list)
    rows_written: int = 0


def _fan_out(
    prepared: PreparedRun,
    the_plan: Plan,
    tasks: PartitionTasks,
    target_id: str,
    run_id: str,
    limit: int,
    out: _Outcome,
    lost: Callable[[], bool] = lambda: False,
) -> None:
    """Submit the plan under ``limit`` (one partition or one batch per task run), stop at the
    window's end or when this run's lease is lost, collect every final state."""
    logger = get_run_logger()
    request, pipeline, ledger = prepared.request, prepared.pipeline, prepared.ledger
    storage = get_settings().result_storage
    deadline = resolve_deadline(request.window_end, request.timezone, window.clock())
    if deadline is not None:
        logger.info("window closes at %s: no partition starts after that", deadline.isoformat())
    common = dict(
        pipeline=pipeline.name,
        fingerprint=pipeline.fingerprint,
        target_id=target_id,
        ledger_path=ledger.path,
        run_id=run_id,
    )
    units = batches(the_plan.to_run, request.batch_size)
    source, target = prepared.source, prepared.target

    def refresh(unit: Sequence[Partition]) -> bool:
        """A cached result is served only where the target still has the partition (and never for
        reprocess=all): a partition deleted from the target is written again, not "resumed"."""
        if request.reprocess.value == "all":
            return True
        return target is None or not target.exists or not all(target.has(p.key) for p in unit)

    if request.batch_size == 1:
        options: dict[str, Any] = dict(
            retries=request.retries,
            retry_delay_seconds=_backoff(request.retry_delay_seconds),
            result_storage=storage,
        )
        fresh, cached_ok = (tasks.partition.with_options(refresh_cache=r, **options) for r in (True, False))
        submits = [
            partial(
                (fresh if refresh(unit) else cached_ok).submit,
                partition=unit[0].key,
                source_digest=_digest(source, unit[0]),
                **common,
            )
            for unit in units
        ]
    else:
        fresh, cached_ok = (tasks.batch.with_options(result_storage=storage, refresh_cache=r) for r in (True, False))
        logger.info("%d partitions in %d batches of up to %d", len(the_plan.to_run), len(units), request.batch_size)
        submits = [
            partial(
                (fresh if refresh(unit) else cached_ok).submit,
                partitions=[p.key for p in unit],
                size=len(unit),
                source_digests=[_digest(source, p) for p in unit],
                retries=request.retries,
                retry_delay_seconds=request.retry_delay_seconds,
                deadline=deadline,
                **common,
            )
            for unit in units
        ]
    reporter = ProgressReporter(
        pipeline.name, len(the_plan.to_run), limit, history=prepared.history, skipped=len(the_plan.skipped)
    )
    futures = _submit_bounded(
        submits,
        limit,
        on_done=reporter.partitions_finished,
        sizes=[len(unit) for unit in units],
        keep_going=lambda: not lost() and (deadline is None or window.clock() < deadline),
    )
    late_events: list[LedgerEvent] = []
    for unit, future in zip(units, futures, strict=True):
        keys = [p.key for p in unit]
        if future is None:
            out.not_started.extend(keys)
            continue
        future.wait()
        state = future.state
        if state.is_completed():
            value = state.result()
            results, not_started = (
                (value.completed, value.not_started) if isinstance(value, BatchResult) else ((value,), ())
            )
            out.not_started.extend(not_started)
            for result in results:
                out.rows_written += result.rows_out
                if state.name == "Cached":
                    # The task body did not run, so nothing recorded it in this ledger: do it here,
                    # in one commit for all cached partitions.
                    out.cached.append(result.partition)
                    late_events.append(_cached_event(run_id, pipeline.version, result))
                else:
                    out.completed.append(result.partition)
                    out.bookkeeping.append(result.bookkeeping_s)
            continue
        error = state.result(raise_on_failure=False)
        if isinstance(error, BatchFailedError):
            for result in error.result.completed:
                out.rows_written += result.rows_out
                out.completed.append(result.partition)
                out.bookkeeping.append(result.bookkeeping_s)
            out.failed.extend(error.result.failed)
            out.not_started.extend(error.result.not_started)
            continue
        message = one_line(error) if isinstance(error, BaseException) else str(state.message or state.name)
        out.failed.extend((key, message) for key in keys)
    reporter.close(done=len(the_plan.to_run) - len(out.not_started), failed=len(out.failed))
    ledger.record(late_events)
    ledger.compact()


def batches(partitions: Sequence[Partition], size: int) -> list[tuple[Partition, ...]]:
    """Consecutive runs of ``size`` partitions, in plan order (the last one may be shorter)."""
    return [tuple(partitions[i : i + size]) for i in range(0, len(partitions), size)]


def _backoff(base: float) -> list[float]:
    """Exponential backoff delays for up to 20 retries (jitter is added by Prefect)."""
    return [base * 2**i for i in range(20)]


def _digest(source: TableSnapshot | None, partition: Partition) -> str | None:
    return source.digest(partition.key) if source is not None else None


def _cached_event(run_id: str, version: str, result: PartitionResult) -> LedgerEvent:
    now = datetime.now(UTC)
    return LedgerEvent(
        run_id=run_id,
        pipeline=result.pipeline,
        partition=result.partition,
        status=Status.COMPLETE,
        version=version,
        fingerprint=result.fingerprint,
        started_at=now,
        finished_at=now,
        rows_in=result.rows_in,
        rows_out=result.rows_out,
        duration_s=0.0,
        table_version=result.table_version,
        error=f"cached: written by run {result.run_id}",
        source_digest=result.source_digest,
        target_id=result.target_id,
        cached=True,
    )


def _submit_bounded(
    submits: Sequence[Callable[[], PrefectFuture[Any]]],
    limit: int,
    on_done: Callable[[int, bool, float | None], None] | None = None,
    sizes: Sequence[int] | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> list[PrefectFuture[Any] | None]:
    """Submit one after another, never more than ``limit`` unfinished at once; ``on_done(n, ok, seconds)``
    hears of each task run (of ``sizes[i]`` partitions) as it finishes, from the task's thread. Once
    ``keep_going()`` says no (a window closed), nothing more starts: those places hold None, and what
    runs is left to finish."""
    slots = threading.BoundedSemaphore(limit)
    futures: list[PrefectFuture[Any] | None] = []
    for index, submit in enumerate(submits):
        size = sizes[index] if sizes is not None else 1
        if keep_going is not None and not keep_going():
            futures.append(None)
            continue
        slots.acquire()
        if keep_going is not None and not keep_going():  # the window may have closed while we waited
            slots.release()
            futures.append(None)
            continue
        submitted = time.perf_counter()
        try:
            future = submit()
        except BaseException:
            slots.release()
            raise

        def finished(f: PrefectFuture[Any], submitted: float = submitted, size: int = size) -> None:
            slots.release()
            if on_done is not None:
                try:
                    ok = f.state.is_completed()
                except Exception:
                    ok = False
                on_done(size, ok, (time.perf_counter() - submitted) / size)

        future.add_done_callback(finished)
        futures.append(future)
    return futures


def _summary_markdown(summary: BackfillSummary, resume_command: str) -> str:
    lines = [
        f"# Backfill {summary.pipeline} {summary.start} … {summary.end}",
        "",
        "| completed | cached | skipped | failed | not started | rows written | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| {len(summary.completed)} | {len(summary.cached)} | {summary.skipped} | {len(summary.failed)} "
        f"| {len(summary.not_started)} | {summary.rows_written:,} | {summary.duration_s:.1f} |",
    ]
    if summary.failed:
        lines += ["", "## Failed partitions", "", "| partition | error |", "|---|---|"]
        lines += [f"| {key} | {error.replace('|', '/')} |" for key, error in summary.failed]
        lines += ["", f"Resume with `{resume_command}`"]
    return "\n".join(lines)
