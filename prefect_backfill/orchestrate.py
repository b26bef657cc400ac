"""Run a prepared plan inside the backfill flow, in steps a reader can follow:

1. **serve from the cache** the due partitions whose records prove them complete (a lost ledger);
2. **claim** (under a lease): leave out what live runs hold, take free slots of the cap, record PENDING;
3. **chunk**: pack the claimed partitions into consecutive chunks by source bytes (one Spark job and
   one Delta commit each; the partition stays the unit of the ledger, the cache and failures);
4. **submit** the chunks, never more than the run's slots in flight, none that would not fit before the
   night window closes (shrunk to fit), none after it; cancel what still runs at the window's hard stop;
5. **collect** every chunk's per-partition outcomes into the summary, and **publish** the artifacts.

Runner-agnostic on purpose: the limit is a semaphore released by each future's done-callback, so the
same loop bounds a thread pool or a Dask cluster.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.artifacts import create_markdown_artifact, create_progress_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from prefect_backfill import stopping, window
from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.canary import CanaryDecision, Decision, gate_summary, local_gate
from prefect_backfill.chunking import Chunk
from prefect_backfill.coordination import claim, pipeline_cap, target_key
from prefect_backfill.diff import diff_markdown, run_diffs
from prefect_backfill.drift import is_target_drift, target_drift
from prefect_backfill.engine import get_engine
from prefect_backfill.errors import ChunkFailedError, one_line
from prefect_backfill.events import emit_run_finished
from prefect_backfill.leases import LeaseTable, RunLease, lease_location
from prefect_backfill.ledger import LedgerEvent, latest_states
from prefect_backfill.partitions import Partition
from prefect_backfill.planning import UNDONE, Plan, Reprocess, Status, held_keys, leave_out
from prefect_backfill.reporting import ProgressReporter, artifact_key, publish_diff_artifact, publish_final_artifacts
from prefect_backfill.request import PreparedRun
from prefect_backfill.results import BackfillSummary, ChunkResult, PartitionResult
from prefect_backfill.run_state import ServerSideEnd
from prefect_backfill.settings import get_settings
from prefect_backfill.tables import TableSnapshot
from prefect_backfill.window import resolve_deadline

__all__ = ["run_prepared"]


def run_prepared(prepared: PreparedRun, chunk_task: Any, started: float | None = None) -> BackfillSummary:
    """Run ``prepared.plan`` with ``chunk_task`` (``tasks.chunk.backfill_chunk``) inside the current flow.

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
        # Ctrl-C or a worker's SIGTERM: no new chunk, the Spark work in flight cancelled (see stopping).
        with (
            stopping.stop_on_signals(lambda _: get_engine().cancel(pipeline)),
            ServerSideEnd(str(flow_run.id) if flow_run.id else None, get_settings().state_poll_seconds),
        ):
            if stopping.requested() is not None:  # stopped before it began (while Prefect started the flow)
                out.not_started.extend(p.key for p in the_plan.to_run)
            else:
                target = get_engine().ensure_target(pipeline)
                target_id = target.table_id or pipeline.target.location
                cache = PartitionCache.from_settings(get_settings())
                the_plan = _serve_cached(prepared, the_plan, cache, target_id, run_id, out)
                if the_plan.to_run:
                    the_plan = _claim_and_run(prepared, the_plan, chunk_task, cache, target_id, run_id, out)
            stop = stopping.requested()
            if stop is not None:
                out.stopped, out.stop_code = stop.name, stop.exit_code

    held = held_keys(the_plan)
    summary = BackfillSummary(
        pipeline=pipeline.name,
        run_id=run_id,
        start=prepared.partitions[0].key if prepared.partitions else "",
        end=prepared.partitions[-1].key if prepared.partitions else "",
        fingerprint=pipeline.fingerprint,
        total=prepared.plan.total,
        # Skipped: complete before, excluded, or completed by another run meanwhile; not the partitions
        # left to a live run (held) nor those served from cache records (cached).
        skipped=len(the_plan.skipped) - len(held) - len(out.cached),
        completed=tuple(out.completed),
        cached=tuple(out.cached),
        failed=tuple(out.failed),
        not_started=tuple(out.not_started),
        held=held,
        rows_written=out.rows_written,
        duration_s=time.perf_counter() - started,
        bookkeeping_s=tuple(out.bookkeeping),
        gate=out.gate,
        stopped=out.stopped,
        stop_code=out.stop_code,
    )
    logger.info("%s", summary)
    emit_run_finished(summary)
    if held:
        logger.warning(
            "%d partition(s) are held by another live run and left to it: %s",
            len(held),
            "; ".join(sorted({s.reason for s in the_plan.skipped if s.partition.key in set(held)})),
        )
    if prepared.plan.to_run:
        events = prepared.ledger.events(pipeline.name).to_pylist()
        publish_final_artifacts(pipeline.name, pipeline.fingerprint, prepared.partitions, latest_states(events))
        if out.completed:
            publish_diff_artifact(pipeline.name, run_id, events)
    create_markdown_artifact(
        key=artifact_key(pipeline.name, "summary"),
        markdown=_summary_markdown(summary, prepared.resume_command),
        description=f"{pipeline.name}: {len(out.failed)} failed of {summary.total}",
    )
    return summary


@dataclass
class _Outcome:
    completed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    bookkeeping: list[float] = field(default_factory=list)
    rows_written: int = 0
    gate: str | None = None  # why the run stopped at the canary gate (None: it did not)
    stopped: str | None = None  # what stopped the run (SIGINT, SIGTERM, Crashed), if anything did
    stop_code: int | None = None  # and the exit code it means


def _serve_cached(
    prepared: PreparedRun, the_plan: Plan, cache: PartitionCache, target_id: str, run_id: str, out: _Outcome
) -> Plan:
    """Step 1: due partitions whose cache record proves them complete (same fingerprint, same source
    files, same target table, and the target still holds what the record says was written: the
    partition, its rows, its files) are recorded COMPLETE (cached) and not run. This is what resumes a
    run whose ledger was lost. Never for ``reprocess=all``, never for a partition due because its
    target drifted (a record cannot repair data another writer changed)."""
    target = prepared.target
    if prepared.request.reprocess is Reprocess.ALL or target is None or not target.exists:
        return the_plan
    pipeline = prepared.pipeline
    served: list[PartitionResult] = []
    for partition in the_plan.to_run:
        if the_plan.why.get(partition.key) == UNDONE:
            continue  # restored by `backfill undo` to older content: the record describes what was undone
        digest = prepared.source.digest(partition.key) if prepared.source is not None else None
        if not target.has(partition.key) and target.known:
            continue  # a record cannot stand in for data that is gone (an allowed-empty partition reruns)
        if is_target_drift(the_plan.why.get(partition.key, "")):
            continue
        key = cache_key(pipeline.name, partition.key, pipeline.fingerprint, target_id, digest)
        record = cache.get(key)
        if record is not None and _still_written(record, target):
            served.append(record)
    if not served:
        return the_plan
    now = datetime.now(UTC)
    prepared.ledger.record(
        [
            LedgerEvent(
                run_id=run_id,
                pipeline=r.pipeline,
                partition=r.partition,
                status=Status.COMPLETE,
                version=pipeline.version,
                fingerprint=r.fingerprint,
                started_at=now,
                finished_at=now,
                rows_in=r.rows_in,
                rows_out=r.rows_out,
                duration_s=0.0,
                table_version=r.table_version,
                error=f"cached: written by run {r.run_id}",
                source_digest=r.source_digest,
                target_id=r.target_id,
                cached=True,
                target_digest=getattr(r, "target_digest", None),
            )
            for r in served
        ]
    )
    out.cached.extend(r.partition for r in served)
    out.rows_written += sum(r.rows_out for r in served)
    return leave_out(the_plan, {r.partition: "complete (cache record)" for r in served})


def _still_written(record: PartitionResult, target: TableSnapshot) -> bool:
    """Whether ``target`` still holds what ``record`` says was written (records of older releases carry
    no target digest: then only the partition's rows are compared)."""
    drift = target_drift(
        record.partition,
        target,
        rows=record.rows_out,
        digest=getattr(record, "target_digest", None),
        target_id=None,  # the record's key holds the target's id already
    )
    return drift is None


def _claim_and_run(
    prepared: PreparedRun,
    the_plan: Plan,
    chunk_task: Any,
    cache: PartitionCache,
    target_id: str,
    run_id: str,
    out: _Outcome,
) -> Plan:
    """Step 2, then 3-5: take a lease, claim what no live run holds and the cap's free slots, run it;
    the plan actually run (without the partitions left to others) is returned.

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

    def execute(mine: Plan, slots: int, lost: Callable[[], bool]) -> None:
        canaries = prepared.canaries(mine.to_run)
        if canaries:
            total = len(mine.to_run)
            if not _canaries_pass(prepared, canaries, total, chunk_task, cache, target_id, run_id, slots, lost, out):
                written_first = set(canaries)
                out.not_started.extend(p.key for p in mine.to_run if p not in written_first)
                return
            mine = leave_out(mine, {p.key: "canary (written first)" for p in canaries})
        chunks = prepared.chunks(mine.to_run, slots)
        logger.info(
            "%d partitions in %d chunk(s) (one Spark job and one Delta commit each; up to %s MB, %d partitions)",
            len(mine.to_run),
            len(chunks),
            f"{request.chunk_mb:g}",
            request.chunk_partitions,
        )
        futures = _submit(prepared, chunks, chunk_task, cache, target_id, run_id, slots, lost)
        _collect(prepared, chunks, futures, out)

    if not settings.coordinate:
        record_claims(the_plan)
        execute(the_plan, request.max_concurrency, lambda: False)
        return the_plan
    leases = LeaseTable(lease_location(ledger.path))
    with RunLease(leases, run_id, pipeline.name, target_key(pipeline.target)) as lease:
        try:
            got = claim(
                leases,
                lease,
                the_plan,
                current=ledger.current,
                record_claims=record_claims,
                wanted=request.max_concurrency,
                cap=pipeline_cap(pipeline.name, settings.pipeline_cap),
                timeout=settings.wait_timeout,
                planned_at=prepared.planned_at,
                say=logger.warning,
                sleep=_pause_unless_stopped,
            )
        except stopping.Interrupted:  # stopped while waiting for a slot: nothing was claimed
            out.not_started.extend(p.key for p in the_plan.to_run)
            return the_plan
        if got.slots and got.slots < request.max_concurrency:
            logger.info("the pipeline's shared cap allows %d partitions in flight for this run", got.slots)
        if got.plan.to_run:
            execute(got.plan, got.slots, lambda: lease.lost)
    return got.plan


def _pause_unless_stopped(seconds: float) -> None:
    """The claim's wait between tries, cut short by a stop signal, which ends the wait."""
    stopping.pause(seconds)
    if stopping.requested() is not None:
        raise stopping.Interrupted


def _canaries_pass(
    prepared: PreparedRun,
    canaries: Sequence[Partition],
    total: int,
    chunk_task: Any,
    cache: PartitionCache,
    target_id: str,
    run_id: str,
    slots: int,
    lost: Callable[[], bool],
    out: _Outcome,
) -> bool:
    """The canary gate (:mod:`prefect_backfill.canary`): write the canaries, each in its own chunk,
    publish what they changed, and ask. False stops the run (``out.gate`` says why)."""
    logger = get_run_logger()
    request, pipeline = prepared.request, prepared.pipeline
    keys = [p.key for p in canaries]
    logger.info("canary partitions first: %s", ", ".join(keys))
    sizes = prepared.source.partitions if prepared.source is not None else {}
    chunks = [Chunk((p,), sizes[p.key].size_bytes if p.key in sizes else 0) for p in canaries]
    _collect(prepared, chunks, _submit(prepared, chunks, chunk_task, cache, target_id, run_id, slots, lost), out)
    first = set(keys)
    failed = [k for k, _ in out.failed if k in first]
    if stopping.requested() is not None:
        return False  # a stop signal: said as such by the summary, not as the gate's verdict
    if failed or any(k in first for k in out.not_started):
        out.gate = f"canary partition(s) did not complete ({', '.join(failed) or 'window closed'})"
        return False
    events = prepared.ledger.events(pipeline.name).to_pylist()
    diffs = run_diffs(events, run_id)
    text = diff_markdown(f"{pipeline.name}: canaries of run {run_id[:8]}", diffs)
    artifact_id = create_markdown_artifact(
        text, key=artifact_key(pipeline.name, "canary"), description=f"{pipeline.name}: canary diff"
    )
    if not request.approve:  # the progress artifact counts the whole range while it waits
        create_progress_artifact(
            100.0 * len(keys) / max(1, total),
            key=artifact_key(pipeline.name, "progress"),
            description=f"{pipeline.name}: {len(keys)} of {total} written, waiting for approval at the canary gate",
        )
    try:
        with stopping.interruptible():  # Ctrl-C at the prompt, SIGTERM while paused: the run stops here
            if request.approve:
                decision = Decision(True, "--approve")
            elif (ask := local_gate()) is not None:
                decision = ask(text)
            else:
                summary = gate_summary(pipeline.name, diffs, max(0, total - len(keys)), _artifact_url(artifact_id))
                decision = _pause_for_approval(request.canary_timeout_s, len(keys), summary)
    except stopping.Interrupted:
        stop = stopping.requested()
        decision = Decision(False, stop.said if stop is not None else "a signal")
    logger.info(
        "canary gate: %s by %s%s",
        "approved" if decision.approved else "stopped",
        decision.by,
        f" ({decision.note})" if decision.note else "",
    )
    if not decision.approved and stopping.requested() is None:  # a stop is said as a stop, not a rejection
        how = "no answer within the timeout" if decision.by == "timeout" else f"rejected ({decision.by})"
        out.gate = how + (f": {decision.note}" if decision.note else "")
    return decision.approved


def _artifact_url(artifact_id: object) -> str | None:
    """The UI page of an artifact, where the server's UI address is known (Prefect's ``url_for`` has no
    artifact route; the UI's own is ``/artifacts/artifact/<id>``)."""
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    return f"{str(ui).rstrip('/')}/artifacts/artifact/{artifact_id}" if ui and artifact_id else None


def _pause_for_approval(timeout_s: int, canaries: int, summary: str) -> Decision:
    """Pause the flow run with the approval form on its page, ``summary`` as the form's description; the
    answer (or the timeout) decides."""
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import pause_flow_run

    get_run_logger().warning(
        "%d canary partition(s) written: see the canary diff artifact, then approve or reject on this flow run's "
        "page (Resume, then choose approve or reject); no answer within %d s stops the run",
        canaries,
        timeout_s,
    )
    try:
        answer = pause_flow_run(
            wait_for_input=CanaryDecision.with_initial_data(description=summary),
            timeout=timeout_s,
            poll_interval=max(1, int(get_settings().canary_poll_seconds)),
            key="canary",
        )
    except FlowPauseTimeout:
        return Decision(False, "timeout")
    return Decision(answer.decision == "approve", "operator", answer.note)


@dataclass
class _Submitted:
    """A chunk as submitted (possibly shrunk to fit the window) and its future; None if not started."""

    chunk: Chunk
    future: PrefectFuture[Any] | None
    left: tuple[str, ...] = ()  # partitions of the chunk not started (window)


def _submit(
    prepared: PreparedRun,
    chunks: Sequence[Chunk],
    chunk_task: Any,
    cache: PartitionCache,
    target_id: str,
    run_id: str,
    limit: int,
    lost: Callable[[], bool],
) -> list[_Submitted]:
    """Step 4: submit chunk after chunk, never more than ``limit`` in flight; stop at the window's end
    or when the run's lease is lost; shrink a chunk that would not fit before the window closes."""
    logger = get_run_logger()
    request, pipeline = prepared.request, prepared.pipeline
    settings = get_settings()
    deadline = resolve_deadline(request.window_end, request.timezone, window.clock(), past_ok=True)
    hard_stop = deadline + timedelta(seconds=settings.window_grace) if deadline is not None else None
    if deadline is not None:
        logger.info("window closes at %s: no chunk starts after that", deadline.isoformat())
    per_partition = list(prepared.history)
    reporter = ProgressReporter(
        pipeline.name,
        sum(len(c) for c in chunks),
        limit,
        history=prepared.history,
        skipped=len(prepared.plan.skipped),
    )
    slots = threading.BoundedSemaphore(limit)
    in_flight: dict[int, _Submitted] = {}
    guard = threading.Lock()
    submitted: list[_Submitted] = []

    def fits(chunk: Chunk) -> int:
        """How many of ``chunk``'s partitions can finish before the window closes (by history)."""
        left = None if deadline is None else (deadline - window.clock()).total_seconds()
        return window.partitions_that_fit(len(chunk), left, per_partition)

    watchdog = _HardStop(hard_stop, lambda: [s.chunk for s in list(in_flight.values())], prepared, logger)
    try:
        for index, chunk in enumerate(chunks):
            if lost() or stopping.requested() or fits(chunk) == 0:
                submitted.append(_Submitted(chunk, None, tuple(chunk.keys)))
                continue
            slots.acquire()
            n = fits(chunk)  # the window may have come closer while we waited
            if lost() or stopping.requested() or n == 0:
                slots.release()
                submitted.append(_Submitted(chunk, None, tuple(chunk.keys)))
                continue
            run_now = Chunk(chunk.partitions[:n]) if n < len(chunk) else chunk
            if n < len(chunk):
                logger.info("chunk %s shrunk to %s to fit before the window closes", chunk.span, run_now.span)
            begun = time.perf_counter()
            try:
                future = chunk_task.submit(
                    pipeline=pipeline.name,
                    partitions=run_now.keys,
                    span=run_now.span,
                    fingerprint=pipeline.fingerprint,
                    target_id=target_id,
                    ledger_path=prepared.ledger.path,
                    run_id=run_id,
                    source_digests=[
                        prepared.source.digest(k) if prepared.source is not None else None for k in run_now.keys
                    ],
                    source_rows=prepared.source_rows(run_now.keys),
                    retries=request.retries,
                    retry_delay_seconds=request.retry_delay_seconds,
                    deadline=deadline,
                    hard_stop=hard_stop,
                    result_storage=str(cache.storage),
                )
            except BaseException:
                slots.release()
                raise
            entry = _Submitted(run_now, future, tuple(chunk.keys[n:]))
            with guard:
                in_flight[index] = entry

            def finished(
                f: PrefectFuture[Any], index: int = index, size: int = len(run_now), t0: float = begun
            ) -> None:
                slots.release()
                with guard:
                    in_flight.pop(index, None)
                failed = _failed_in(f, size)
                seconds = (time.perf_counter() - t0) / size
                if not failed:
                    per_partition.append(seconds)
                reporter.partitions_finished(size, failed, seconds)

            future.add_done_callback(finished)
            submitted.append(entry)
        for entry in submitted:
            if entry.future is not None:
                entry.future.wait()
    finally:
        watchdog.stop()
        reporter.close(
            done=sum(len(e.chunk) for e in submitted if e.future is not None),
            failed=sum(_failed_in(e.future, len(e.chunk)) for e in submitted if e.future is not None),
        )
    return submitted


def _failed_in(future: PrefectFuture[Any], size: int) -> int:
    """How many of a finished chunk's partitions failed (all of them if the task itself crashed)."""
    try:
        state = future.state
        if state.is_completed():
            return 0
        error = state.result(raise_on_failure=False)
    except Exception:
        return size
    return len(error.result.failed) if isinstance(error, ChunkFailedError) else size


class _HardStop:
    """Cancel the Spark work of the chunks in flight at the window's hard stop (its end plus
    ``BACKFILL_WINDOW_GRACE``), or on a stop signal (again every half second while chunks run: a chunk
    that started its job just after a cancel is cancelled by the next). Their commit has not happened,
    so their partitions go back to PENDING."""

    def __init__(
        self, at: datetime | None, running: Callable[[], list[Chunk]], prepared: PreparedRun, logger: Any
    ) -> None:
        self.at, self.running, self.prepared, self.logger = at, running, prepared, logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="backfill-hard-stop", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        told = False
        while not self._stop.wait(0.5):
            if self.at is not None and window.clock() >= self.at:
                engine = get_engine()
                for chunk in self.running():
                    self.logger.warning("window hard stop: cancelling chunk %s", chunk.span)
                    engine.cancel(self.prepared.pipeline, chunk.partitions)
                return
            if (stop := stopping.requested()) is not None and (running := self.running()):
                if not told:
                    spans = ", ".join(c.span for c in running)
                    self.logger.warning("%s: cancelling the chunk(s) in flight: %s", stop.said, spans)
                    told = True
                with contextlib.suppress(Exception):  # the JVM may be gone (SIGTERM reaches it too)
                    get_engine().cancel(self.prepared.pipeline)

    def stop(self) -> None:
        self._stop.set()


def _collect(prepared: PreparedRun, chunks: Sequence[Chunk], submitted: Sequence[_Submitted], out: _Outcome) -> None:
    """Step 5: every chunk's per-partition outcomes into the run's outcome."""
    for entry in submitted:
        out.not_started.extend(entry.left)
        if entry.future is None:
            continue
        state = entry.future.state
        if state.is_completed():
            result = state.result()
            assert isinstance(result, ChunkResult)
        else:
            error = state.result(raise_on_failure=False)
            if isinstance(error, ChunkFailedError):
                result = error.result
            else:
                message = one_line(error) if isinstance(error, BaseException) else str(state.message or state.name)
                out.failed.extend((key, message) for key in entry.chunk.keys)
                continue
        for partition in result.completed:
            out.rows_written += partition.rows_out
            out.completed.append(partition.partition)
            out.bookkeeping.append(partition.bookkeeping_s)
        out.failed.extend(result.failed)
        out.not_started.extend(result.not_started)
    prepared.ledger.compact()


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
