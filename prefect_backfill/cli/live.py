"""What ``backfill run`` shows while and after it runs: the ledger's progress, the summary, and
Py4J's noise about jobs we cancelled on purpose kept out of the terminal."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect_backfill.cli.app import _say, console

if TYPE_CHECKING:
    from prefect_backfill.results import BackfillSummary


class _CancelledJobFilter(logging.Filter):
    """Drops, from the terminal only, what a stop makes Spark say above the one line that tells what
    happened: a log whose error is engine work cancelled on purpose (an :class:`EngineCancelledError`,
    as the engine classifies a cancelled Spark job: Prefect would print each cancelled partition's Java
    trace, ~100 lines), and, once a signal asked the run to stop, py4j's tracebacks of a JVM gone with
    the signal (SIGTERM reaches the whole process group). The Prefect API still receives the task's
    record; the ledger records the partition as not complete."""

    #: A stop was asked while this filter was on: it stays so after the run's stop scope has closed.
    stopped = False

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect_backfill import stopping
        from prefect_backfill.errors import EngineCancelledError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, EngineCancelledError):
            return False
        if stopping.requested() is not None:
            self.stopped = True
        from_py4j = Path(record.pathname).parent.name == "py4j"
        return not (from_py4j and self.stopped)


@contextlib.contextmanager
def _quiet_cancelled_jobs() -> Iterator[None]:
    """Attach :class:`_CancelledJobFilter` to the terminal handlers (root's stream handlers, where
    Prefect's console handler lives) while the flow runs in this process, and for the rest of the process
    once a signal asked it to stop: the JVM that signal also reached can go away after the flow ended,
    and a thread still talking to it then had py4j log its traceback below the resume line (seen once in
    a full test run, 2 s after the SIGTERM)."""
    from prefect_backfill import stopping

    quiet = _CancelledJobFilter()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        if stopping.requested() is None:
            for handler in handlers:
                handler.removeFilter(quiet)
        else:
            quiet.stopped = True


def _flush(ledger: Any, timeout: float) -> None:
    """Wait (a bounded time) for this process's queued ledger events, so the count includes them."""

    flusher = threading.Thread(target=ledger.flush, daemon=True)
    flusher.start()
    flusher.join(timeout)


class _LedgerProgress:
    """A Rich progress bar for ``backfill run`` in a terminal, fed by the ledger (the flow runs in this
    process, but its tasks report to the ledger, which is the one place that knows everything)."""

    def __init__(self, prepared: Any, interval: float = 2.0) -> None:

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.prepared, self.interval = prepared, interval
        self.keys = {p.key for p in prepared.plan.to_run}
        self.since = datetime.now(UTC)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(prepared.pipeline.name, total=len(self.keys), note="")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _LedgerProgress:
        self.progress.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._poll()
        self.progress.stop()

    def _poll(self) -> None:
        from prefect_backfill.eta import estimate

        try:
            rows = self.prepared.ledger.events(self.prepared.pipeline.name).to_pylist()
        except Exception:  # the bar is a convenience: never let it break the run
            return
        done: dict[str, str] = {}
        durations = []
        for r in rows:
            if r["partition"] in self.keys and r["event_time"] >= self.since and r["status"] in ("COMPLETE", "FAILED"):
                done[r["partition"]] = r["status"]
                if r["status"] == "COMPLETE" and r["duration_s"]:
                    durations.append(float(r["duration_s"]))
        failed = sum(1 for status in done.values() if status == "FAILED")
        eta = estimate(
            len(self.keys) - len(done), durations, self.prepared.request.max_concurrency, self.prepared.history
        )
        note = (f"[red]{failed} failed[/] · " if failed else "") + str(eta)
        self.progress.update(self.task, completed=len(done), note=note)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self._poll()


def _print_summary(summary: BackfillSummary) -> None:
    console.print(
        f"[bold]{summary.pipeline}[/]: {len(summary.completed)} completed, {len(summary.cached)} cached, "
        f"{summary.skipped} skipped, {len(summary.failed)} failed of {summary.total}; "
        f"{summary.rows_written:,} rows written in {summary.duration_s:.1f}s",
        highlight=False,
    )
    if summary.completed and summary.run_id:  # what wrote something can be undone: say how
        run_id = summary.run_id
        _say(f"run {run_id}: undo it with `backfill undo {summary.pipeline} --run {run_id[:8]}`")
