"""Submit a run's chunks and collect what they did (steps 4 and 5 of :mod:`.orchestrate`).

Runner-agnostic on purpose: the limit is a semaphore released by each future's done-callback, so the
same loop bounds a thread pool or a Dask cluster. Chunks that would not fit before the night window
closes are shrunk or left; what still runs at the window's hard stop is cancelled."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger

from prefect_backfill import stopping, window
from prefect_backfill.caching import PartitionCache
from prefect_backfill.chunking import Chunk
from prefect_backfill.engine import get_engine
from prefect_backfill.errors import ChunkFailedError, one_line
from prefect_backfill.executing import ChunkJob
from prefect_backfill.preparing import PreparedRun
from prefect_backfill.reporting import ProgressReporter
from prefect_backfill.results import ChunkResult
from prefect_backfill.window import resolve_deadline

__all__ = ["Outcome", "RunContext", "SubmitChunk", "collect", "submit"]

#: Starts one chunk's task run on the run's task runner (thread pool or Dask) and returns its future.
SubmitChunk = Callable[[ChunkJob], PrefectFuture[Any]]


@dataclass
class Outcome:
    completed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    bookkeeping: list[float] = field(default_factory=list)
    rows_written: int = 0
    gate: str | None = None  # why the run stopped at the canary gate (None: it did not)
    stopped: str | None = None  # what stopped the run (SIGINT, SIGTERM, Crashed), if anything did
    stop_code: int | None = None  # and the exit code it means


@dataclass(frozen=True)
class RunContext:
    """What every step of one run's execution shares (the gate, the submission, the collection): the
    prepared run, its id, the target's identity, the cache records' store, how a chunk is started, and
    the outcome the steps add to."""

    prepared: PreparedRun
    run_id: str
    target_id: str
    cache: PartitionCache
    submit_chunk: SubmitChunk
    out: Outcome


@dataclass
class _Submitted:
    """A chunk as submitted (possibly shrunk to fit the window) and its future; None if not started."""

    chunk: Chunk
    future: PrefectFuture[Any] | None
    left: tuple[str, ...] = ()  # partitions of the chunk not started (window)


def submit(ctx: RunContext, chunks: Sequence[Chunk], limit: int, lost: Callable[[], bool]) -> list[_Submitted]:
    """Step 4: submit chunk after chunk, never more than ``limit`` in flight; stop at the window's end
    or when the run's lease is lost; shrink a chunk that would not fit before the window closes."""
    logger = get_run_logger()
    prepared, cache, run_id, target_id = ctx.prepared, ctx.cache, ctx.run_id, ctx.target_id
    request, pipeline = prepared.request, prepared.pipeline
    settings = prepared.settings
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
                future = ctx.submit_chunk(
                    ChunkJob(
                        pipeline=pipeline.name,
                        partitions=tuple(run_now.keys),
                        span=run_now.span,
                        fingerprint=pipeline.fingerprint,
                        target_id=target_id,
                        ledger_path=prepared.ledger.path,
                        run_id=run_id,
                        source_digests=tuple(
                            prepared.source.digest(k) if prepared.source is not None else None for k in run_now.keys
                        ),
                        source_rows=tuple(prepared.source_rows(run_now.keys)),
                        source_bytes=tuple(prepared.source_bytes(run_now.keys)),
                        source_version=prepared.source.version if prepared.source is not None else None,
                        retries=request.retries,
                        retry_delay_seconds=request.retry_delay_seconds,
                        deadline=deadline,
                        hard_stop=hard_stop,
                        result_storage=str(cache.storage),
                        source_storage=pipeline.source.storage,
                        target_storage=pipeline.target.storage,
                        cascade=request.cascade,
                    )
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
    """How many of a finished chunk's partitions failed (all of them if the task itself crashed).

    Told by the future's own final state, which ``wait`` takes from the finished future without a request:
    ``future.state`` before it asks the API (one request per chunk), and in a done-callback the server may
    not have recorded the task run yet: a 404 reads as Pending, and a finished chunk counted as all failed
    in the live progress until the end (10 of 439 chunks in one control-plane bench run)."""
    try:
        future.wait(0)  # finished: sets the final state from its own result
        state = future.state
        if state.is_completed():
            return 0
        error = state.result(raise_on_failure=False)
    except Exception:
        return size
    return len(error.result.failed) if isinstance(error, ChunkFailedError) else size


class _HardStop:
    """Cancel the Spark work of the chunks in flight at the window's hard stop (its end plus
    ``BACKFILL_WINDOW_GRACE``), or on a stop signal. Either way again every half second while chunks
    run: a chunk's work is several Spark jobs, and a job that starts just after a cancel (or a chunk
    still planning when the hard stop came, on a busy driver) is cancelled by the next one, not left to
    run to its commit. Their commit has not happened, so their partitions go back to PENDING."""

    def __init__(
        self, at: datetime | None, running: Callable[[], list[Chunk]], prepared: PreparedRun, logger: Any
    ) -> None:
        self.at, self.running, self.prepared, self.logger = at, running, prepared, logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="backfill-hard-stop", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        told = False
        cancelled: set[str] = set()
        while not self._stop.wait(0.5):
            if self.at is not None and window.clock() >= self.at:
                engine = get_engine()
                for chunk in self.running():
                    if chunk.span not in cancelled:
                        self.logger.warning("window hard stop: cancelling chunk %s", chunk.span)
                        cancelled.add(chunk.span)
                    with contextlib.suppress(Exception):  # the job may have ended between the two calls
                        engine.cancel(self.prepared.pipeline, chunk.partitions)
                continue
            if (stop := stopping.requested()) is not None and (running := self.running()):
                if not told:
                    spans = ", ".join(c.span for c in running)
                    self.logger.warning("%s: cancelling the chunk(s) in flight: %s", stop.said, spans)
                    told = True
                with contextlib.suppress(Exception):  # the JVM may be gone (SIGTERM reaches it too)
                    get_engine().cancel(self.prepared.pipeline)

    def stop(self) -> None:
        self._stop.set()


def collect(ctx: RunContext, submitted: Sequence[_Submitted]) -> None:
    """Step 5: every chunk's per-partition outcomes into the run's outcome."""
    out = ctx.out
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
    ctx.prepared.ledger.compact()
