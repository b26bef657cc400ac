"""``backfill``: run, plan and inspect backfills from a terminal.

Ranges are inclusive: ``--start 2024-01-01 --end 2024-06-30`` is 182 daily partitions. Every error the
user can cause prints one line (``error: …``, on stderr) and exits non-zero; nothing is written before
the request is valid. Usage errors (bad flags, values, dates, unknown pipeline, bad settings) exit 2;
anything unexpected exits 1 with the error's type and first line (``backfill --verbose …`` prints the
traceback). ``run`` exits with what happened to the partitions (:data:`~prefect_backfill.errors.EXIT_CODES`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import statistics
import sys
import threading
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from prefect_backfill.errors import EXIT_CODES, BackfillError
from prefect_backfill.limits import MAX_CANARY, MAX_CHUNK_PARTITIONS, MAX_RETRIES
from prefect_backfill.planning import Status

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from prefect_backfill.canary import Decision
    from prefect_backfill.request import PreparedRun

__all__ = ["app", "main"]

app = typer.Typer(
    name="backfill",
    help="Reprocess date-partitioned Delta tables partition by partition, resumably, with Prefect.",
    # Not no_args_is_help: typer prints the whole help *before* raising that error. `backfill` alone is
    # a one-line usage error ("no command given") like every other.
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True, highlight=False)
_options: dict[str, bool] = {"verbose": False, "interrupt_reported": False, "terminated": False, "json": False}


@app.callback()
def _global_options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="On an error, print the full traceback (before the command).")
    ] = False,
) -> None:
    _options["verbose"] = verbose


Start = Annotated[
    str | None, typer.Option("--start", help="First partition, inclusive (YYYY-MM-DD; 2024-01-03T05 hourly; 2024-01).")
]
End = Annotated[str | None, typer.Option("--end", help="Last partition, inclusive.")]
Partitions = Annotated[
    str | None, typer.Option("--partitions", help="Explicit comma-separated partition keys, instead of --start/--end.")
]
ReprocessOpt = Annotated[
    str, typer.Option("--reprocess", help="missing (default: not complete for this version) | failed | all")
]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help="Partition key to leave out (repeatable).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _keys(text: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


@app.command()
def pipelines() -> None:
    """List registered pipelines."""
    from prefect_backfill.errors import ConfigurationError
    from prefect_backfill.registry import all_pipelines

    registered = all_pipelines()
    if not registered:  # an empty table with exit 0 would read as "configured, and empty"
        raise ConfigurationError(
            "no pipelines are registered: set BACKFILL_PIPELINE_MODULES=your.module (or pipeline_modules under "
            "[tool.prefect-backfill] in pyproject.toml) to modules that call prefect_backfill.register"
        )
    table = Table("name", "grain", "version", "source", "target", "partition column")
    for p in registered:
        table.add_row(p.name, p.grain.value, p.fingerprint, str(p.source), str(p.target), p.partition_column)
    console.print(table)


@app.command()
def plan(
    pipeline: str,
    start: Start = None,
    end: End = None,
    partitions: Partitions = None,
    reprocess: ReprocessOpt = "missing",
    exclude: Exclude = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    yes: Annotated[bool, typer.Option("--yes")] = False,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1, help="For the estimate.")] = 2,
    chunk_mb: Annotated[float, typer.Option("--chunk-mb", min=0.001, help="As for run.")] = 256.0,
    chunk_partitions: Annotated[
        int, typer.Option("--chunk-partitions", min=1, max=MAX_CHUNK_PARTITIONS, help="As for run.")
    ] = 400,
    as_json: AsJson = False,
) -> None:
    """Dry run: which partitions a run would process and why, why the others are skipped, the chunks
    they run in (one Spark job and one commit each) and how long it would take. Writes nothing."""
    from prefect_backfill.progress import format_duration
    from prefect_backfill.request import BackfillRequest, prepare

    request = BackfillRequest.build(
        pipeline=pipeline,
        start=start,
        end=end,
        partitions=_keys(partitions),
        reprocess=reprocess,
        exclude=tuple(exclude or ()),
        newest_first=newest_first,
        yes=yes,
        max_concurrency=max_concurrency,
        chunk_mb=chunk_mb,
        chunk_partitions=chunk_partitions,
    )
    prepared = prepare(request)
    the_plan = prepared.plan
    chunks = prepared.chunks(the_plan.to_run, max_concurrency)
    per_partition = statistics.median(prepared.history) if prepared.history else None

    def chunk_seconds(size: int) -> float | None:
        return per_partition * size if per_partition is not None else None

    # Chunks run in waves of max_concurrency: the estimate adds up each wave's longest chunk.
    waves = [chunks[i : i + max_concurrency] for i in range(0, len(chunks), max_concurrency)]
    eta = sum(max(per_partition * len(c) for c in wave) for wave in waves) if per_partition is not None else None
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": the_plan.pipeline,
                    "fingerprint": the_plan.fingerprint,
                    "reprocess": the_plan.reprocess.value,
                    "to_run": [p.key for p in the_plan.to_run],
                    "why": dict(the_plan.why),
                    "skipped": [{"partition": s.partition.key, "reason": s.reason} for s in the_plan.skipped],
                    "notes": list(the_plan.notes),
                    "chunks": [
                        {
                            "span": c.span,
                            "partitions": len(c),
                            "source_bytes": c.size_bytes,
                            "estimated_seconds": chunk_seconds(len(c)),
                        }
                        for c in chunks
                    ],
                    "estimated_seconds": eta,
                },
                indent=2,
            )
        )
        return
    console.print(str(the_plan), highlight=False, soft_wrap=True)
    if chunks:
        console.print(
            f"  chunks: {len(chunks)} (one Spark job and one Delta commit each)", highlight=False, soft_wrap=True
        )
        for c in chunks[:10]:
            seconds = chunk_seconds(len(c))
            console.print(
                f"    {c.span}: {len(c)} partition(s), {c.size_bytes / 1024 / 1024:,.2f} MB of source"
                + (f", ~{format_duration(seconds)}" if seconds is not None else ""),
                highlight=False,
                soft_wrap=True,
            )
        if len(chunks) > 10:
            console.print(f"    … and {len(chunks) - 10} more", highlight=False)
    shown = format_duration(eta) if eta is not None else "unknown (no history yet)"
    console.print(f"  estimate at concurrency {max_concurrency}: {shown}", highlight=False, soft_wrap=True)


def _exit_codes_help() -> str:
    return "\n".join(["Exit codes:", *(f"{code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())])


@app.command(epilog=_exit_codes_help())
def run(
    pipeline: str,
    start: Start = None,
    end: End = None,
    partitions: Partitions = None,
    reprocess: ReprocessOpt = "missing",
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 2,
    retries: Annotated[
        int, typer.Option("--retries", min=0, max=MAX_RETRIES, help="Retries per partition for transient errors.")
    ] = 2,
    retry_delay: Annotated[
        float,
        typer.Option("--retry-delay", min=0, help="Seconds before a partition's first retry; doubles each retry."),
    ] = 5.0,
    exclude: Exclude = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    chunk_mb: Annotated[
        float,
        typer.Option("--chunk-mb", min=0.001, help="Source megabytes per chunk (one Spark job and one commit)."),
    ] = 256.0,
    chunk_partitions: Annotated[
        int,
        typer.Option(
            "--chunk-partitions",
            min=1,
            max=MAX_CHUNK_PARTITIONS,
            help="Partitions per chunk at most (1: one partition per job).",
        ),
    ] = 400,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a range above the safety cap.")] = False,
    window_end: Annotated[
        str | None, typer.Option("--window-end", help="Start no partition after this time (06:00) or instant.")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA timezone of --window-end.")] = "UTC",
    canary: Annotated[
        int,
        typer.Option(
            "--canary",
            min=0,
            max=MAX_CANARY,
            help="Write N partitions first (first, middle, last…), show their diff, ask.",
        ),
    ] = 0,
    canary_partitions: Annotated[
        str | None, typer.Option("--canary-partitions", help="Comma-separated canary partition keys instead of N.")
    ] = None,
    approve: Annotated[
        bool, typer.Option("--approve", help="Do not ask at the canary gate (unattended runs): go on after them.")
    ] = False,
    canary_timeout: Annotated[
        int, typer.Option("--canary-timeout", min=1, help="Seconds to wait for an answer at the canary gate.")
    ] = 3600,
) -> None:
    """Backfill PIPELINE from --start to --end (inclusive) as a Prefect flow run.

    Ctrl-C (or SIGTERM) stops taking partitions and cancels the running Spark jobs (their partitions stay
    PENDING), says how far the run got and prints the command that resumes; exit 130 (143), within 20 s.
    A second Ctrl-C exits at once. Nothing is ever half-written: each chunk is one Delta commit."""
    from prefect_backfill import stopping
    from prefect_backfill.embedded import detach_embedded_server
    from prefect_backfill.request import BackfillRequest, hand_over, prepare

    request = BackfillRequest.build(
        pipeline=pipeline,
        start=start,
        end=end,
        partitions=_keys(partitions),
        reprocess=reprocess,
        max_concurrency=max_concurrency,
        retries=retries,
        retry_delay_seconds=retry_delay,
        exclude=tuple(exclude or ()),
        newest_first=newest_first,
        chunk_mb=chunk_mb,
        chunk_partitions=chunk_partitions,
        yes=yes,
        window_end=window_end,
        timezone=timezone,
        canary=canary,
        canary_partitions=_keys(canary_partitions),
        approve=approve,
        canary_timeout_s=canary_timeout,
    )
    gated = bool(request.canary or request.canary_partitions) and not request.approve
    if gated and not console.is_terminal and not _prefect_server():
        from prefect_backfill.errors import InvalidRequestError

        raise InvalidRequestError(
            "--canary: no one can answer the canary gate here (no terminal, and the embedded Prefect server has no "
            "UI you can reach): add --approve, or set PREFECT_API_URL to a Prefect server and approve in its UI"
        )
    # Validate and plan before Prefect starts: bad input fails fast and writes nothing.
    prepared = prepare(request)
    console.print(str(prepared.plan), highlight=False, soft_wrap=True)
    since = datetime.now(UTC)
    ask_here = gated and console.is_terminal
    stopping.set_last_words(lambda _: _report_interrupt(prepared, since))  # before a forced exit
    # From the plan on, a signal stops the run in order wherever it is (starting Spark or the server, or
    # in the flow): never a KeyboardInterrupt in the middle of a start-up; forced within 20 s at most.
    stop_scope = stopping.stop_on_signals(lambda _: _cancel_running(prepared))
    stop_scope.__enter__()
    try:
        detach_embedded_server()  # Ctrl-C is for this process: the server must see the run end
        hand_over(prepared)  # the flow runs in this process: it takes this plan rather than planning again
        _warm_up(prepared)
        from flows.backfill import backfill
        from prefect_backfill.run_state import heartbeats

        if ask_here:
            from prefect_backfill.canary import install_local_gate

            install_local_gate(_ask_at_the_gate)
        with (
            # From here on a signal stops the run in order, whatever the flow is doing (see stopping).
            stopping.stop_on_signals(lambda _: _cancel_running(prepared)),
            heartbeats(),  # a server's zombie automation must not take a working run for a dead one
            _quiet_cancelled_jobs(),
            _LedgerProgress(prepared)
            if console.is_terminal and prepared.plan.to_run and not ask_here
            else contextlib.nullcontext(),
        ):
            # The flow's parameters are the request's fields, by name (one source of truth).
            state = backfill(**request.model_dump(mode="json"), return_state=True)
        hand_over(None)
    except KeyboardInterrupt:  # a signal before the flow took over its signals, or after
        hand_over(None)
        _report_interrupt(prepared, since)
        raise typer.Exit(_interrupt_code()) from None
    finally:
        stop_scope.__exit__(None, None, None)
        stopping.set_last_words(None)
        if ask_here:
            from prefect_backfill.canary import install_local_gate

            install_local_gate(None)
    if state.is_cancelled():
        from prefect_backfill.errors import RunStoppedError

        stopped = state.result(raise_on_failure=False)
        if isinstance(stopped, RunStoppedError):  # the flow stopped on Ctrl-C / SIGTERM, in order
            _print_summary(stopped.summary)
            _report_interrupt(prepared, since)
            raise typer.Exit(stopped.exit_code)
    if gated and state.is_failed() and "never resumed" in (state.message or ""):
        # Prefect fails a paused run whose pause timed out itself, before the flow's own CanaryStoppedError
        # can become the run's state: say it the way the flow would have, with its exit code.
        from prefect_backfill.errors import CanaryStoppedError

        raise CanaryStoppedError(
            f"stopped at the canary gate, no answer within {request.canary_timeout_s} s: the canaries are written "
            f"(`backfill diff {pipeline}` shows them, `backfill undo` restores them); the rest was not started; "
            f"the same command runs new canaries: {prepared.resume_command}"
        )
    # raises BackfillFailedError (one line, exit 1) if partitions failed
    summary = cast(dict[str, Any], state.result())
    _print_summary(summary)
    code = _outcome(prepared, state, summary)
    if code:
        raise typer.Exit(code)


def _cancel_running(prepared: PreparedRun) -> None:
    """On a stop signal: cancel the pipeline's Spark jobs in this process (none if Spark has not started)."""
    from prefect_backfill.engine import get_engine

    get_engine().cancel(prepared.pipeline)


def _undo_unless_stopped(prepared: Any, carry_out: Any) -> Any:
    """Carry the undo out; Ctrl-C or SIGTERM meanwhile cancels its restore job before the commit (one
    commit: all or nothing), says so and exits 130 / 143. A restore that committed first is recorded
    as usual and reported as done: the signal came too late to stop it."""
    from prefect_backfill import stopping

    with stopping.stop_on_signals(lambda _: _cancel_running(prepared)):
        try:
            return carry_out(prepared)
        except Exception:
            stop = stopping.requested()
            if stop is None:
                raise
    _options["interrupt_reported"] = True
    _say(
        f"interrupted ({stop.said}): the restore was cancelled before its commit, nothing was written; "
        "run the same command again to undo",
        style="yellow",
    )
    raise typer.Exit(stop.exit_code)


def _prefect_server() -> bool:
    """Is this process talking to a Prefect server (PREFECT_API_URL), rather than starting the embedded one?"""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _ask_at_the_gate(diff_text: str) -> Decision:
    """The canary gate on the terminal: show what the canaries changed, ask whether to go on."""
    from prefect_backfill.canary import Decision

    console.print(Markdown(diff_text))
    approved = typer.confirm("Write the rest of the range with this version?", default=False)
    return Decision(approved, "terminal")


def _warm_up(prepared: PreparedRun) -> None:
    """Before the flow starts: start Spark and check the pipeline's declarations against the target
    (``ensure_target``: the transform on an empty input, its checks and key, the target's layout; it
    creates the target if missing) while Prefect's embedded server starts (~5 s each, measured in
    docs/benchmarks.md; neither waits for the other). A definition error is then one line with its exit
    code, before any flow run exists, instead of a flow failure with Prefect's traceback above it.

    Only where the chunks run in this process (thread runner, Spark engine). Errors that are not the
    pipeline's (Spark failing in some other way) are left to the flow's own ``ensure_target``."""
    from prefect_backfill.settings import get_settings

    settings = get_settings()
    if not prepared.plan.to_run or settings.engine != "spark" or settings.task_runner != "thread":
        return
    failed: list[BackfillError] = []

    def warm() -> None:
        from prefect_backfill.engine import get_engine

        try:
            get_engine().ensure_target(prepared.pipeline)
        except BackfillError as exc:
            failed.append(exc)
        except Exception:  # the flow's own ensure_target raises it, at its usual place
            pass

    threads = [
        threading.Thread(target=warm, name="backfill-warm-up", daemon=True),
        threading.Thread(target=_start_embedded_server, name="backfill-server-start", daemon=True),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]


def _start_embedded_server() -> None:
    """Start Prefect's embedded server now (when no PREFECT_API_URL), so that it is up when the flow
    starts; best effort: the flow starts it itself otherwise, and says why it could not."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    with contextlib.suppress(Exception):
        SubprocessASGIServer().start()


def _outcome(prepared: PreparedRun, state: State[Any], summary: dict[str, Any]) -> int:
    """Exit code of a run that raised nothing: 4 if partitions were left to another live run, 3 if the
    night window closed before every partition started, else 0 (see EXIT_CODES)."""
    held = list(summary.get("held") or ())
    not_started = list(summary.get("not_started") or ())
    command = prepared.resume_command
    if held:
        _say(
            f"{len(held)} partition(s) were left to another live run: rerun when it ends ({command})",
            style="yellow",
        )
    if not_started:
        message = (
            state.message
            if state.name == "WindowClosed" and state.message
            else f"window closed: {len(not_started)} partitions remain; the next run resumes"
        )
        _say(f"{message} (or now: {command})", style="yellow")
    return 4 if held else 3 if not_started else 0


def _report_interrupt(prepared: PreparedRun, since: datetime) -> None:
    """After Ctrl-C: how far the run got (from the ledger) and the command that resumes. Never raises:
    the resume command is printed even if the ledger cannot be read (or a second Ctrl-C comes)."""
    _options["interrupt_reported"] = True
    command = prepared.resume_command
    planned = [p.key for p in prepared.plan.to_run]
    try:
        _flush(prepared.ledger, timeout=5.0)
        current = prepared.ledger.current(prepared.pipeline.name)
        done = sum(
            1
            for key in planned
            if (state := current.get(key)) is not None and state.status is Status.COMPLETE and state.updated_at >= since
        )
        progress = f"{done} of {len(planned)} planned partitions complete, {len(planned) - done} left"
    except (Exception, KeyboardInterrupt) as exc:
        from prefect_backfill.errors import one_line

        progress = f"progress unknown (the ledger cannot be read: {one_line(exc, 200)})"
    _say(f"interrupted: {progress}; resume with: {command}", style="yellow")


class _CancelledJobFilter(logging.Filter):
    """Drops, from the terminal only, what a stop makes Spark say above the one line that tells what
    happened: a task's failure log whose error is a Spark job cancelled on purpose (Prefect would print
    each cancelled partition's Java trace, ~100 lines), and, once a signal asked the run to stop, py4j's
    tracebacks of a JVM gone with the signal (SIGTERM reaches the whole process group). The Prefect API
    still receives the task's record; the ledger records the partition as not complete."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect_backfill import stopping

        error = record.exc_info[1] if record.exc_info else None
        if error is not None and _CANCELLED_BY_CTRL_C in str(error):
            return False
        from_py4j = Path(record.pathname).parent.name == "py4j"
        return not (from_py4j and stopping.requested() is not None)


_CANCELLED_BY_CTRL_C = "cancelled as part of cancellation of all jobs"


@contextlib.contextmanager
def _quiet_cancelled_jobs() -> Iterator[None]:
    """Attach :class:`_CancelledJobFilter` to the terminal handlers (root's stream handlers, where
    Prefect's console handler lives) while the flow runs in this process."""
    quiet = _CancelledJobFilter()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)


def _flush(ledger: Any, timeout: float) -> None:
    """Wait (a bounded time) for this process's queued ledger events, so the count includes them."""
    import threading

    flusher = threading.Thread(target=ledger.flush, daemon=True)
    flusher.start()
    flusher.join(timeout)


def _say(message: str, style: str | None = None) -> None:
    """One line on stdout, printed as is (no Rich markup: commands and keys may hold brackets)."""
    console.print(Text(message, style=style or ""), soft_wrap=True, highlight=False)


class _LedgerProgress:
    """A Rich progress bar for ``backfill run`` in a terminal, fed by the ledger (the flow runs in this
    process, but its tasks report to the ledger, which is the one place that knows everything)."""

    def __init__(self, prepared: Any, interval: float = 2.0) -> None:
        import threading
        from datetime import UTC, datetime

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
        from prefect_backfill.progress import estimate

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


def _print_summary(summary: dict[str, Any]) -> None:
    console.print(
        f"[bold]{summary['pipeline']}[/]: {len(summary['completed'])} completed, {len(summary['cached'])} cached, "
        f"{summary['skipped']} skipped, {len(summary['failed'])} failed of {summary['total']}; "
        f"{summary['rows_written']:,} rows written in {summary['duration_s']:.1f}s",
        highlight=False,
    )
    if summary.get("completed") and summary.get("run_id"):  # what wrote something can be undone: say how
        run_id = str(summary["run_id"])
        _say(f"run {run_id}: undo it with `backfill undo {summary['pipeline']} --run {run_id[:8]}`")


@app.command()
def status(
    pipeline: str,
    start: Annotated[str | None, typer.Option("--start")] = None,
    end: Annotated[str | None, typer.Option("--end")] = None,
    as_json: AsJson = False,
) -> None:
    """Counts per status, failed partitions with errors, stale and drifted partitions, a calendar and the
    ETA of a running backfill. Reads the ledger and the target's Delta log: no Spark for a path target,
    no Prefect server."""
    from prefect_backfill.calendar import build_grid
    from prefect_backfill.coordination import target_key
    from prefect_backfill.leases import LeaseTable, lease_location
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import parse_partition_key, partitions_between
    from prefect_backfill.progress import estimate
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    for value in (start, end):  # a bad bound is a usage error even when nothing is recorded yet
        if value is not None:
            parse_partition_key(value, spec.grain)
    ledger_path = ledger_location(spec, get_settings())
    states, history = Ledger(ledger_path).read(pipeline)
    recorded = bool(states)
    if not states and not (start and end):
        if as_json:  # the same keys as always, so scripts need no special case
            print(
                json.dumps(
                    {
                        "pipeline": pipeline,
                        "fingerprint": spec.fingerprint,
                        "range": None,
                        "counts": {st.value: 0 for st in Status},
                        "never_run": 0,
                        "failed": [],
                        "stale": [],
                        "undone": [],
                        "eta_seconds": None,
                        "recorded": False,
                        "live_runs": [],
                        "interrupted": [],
                    },
                    indent=2,
                )
            )
            return
        console.print(f"{pipeline}: nothing recorded yet (ledger {ledger_location(spec, get_settings())})")
        return
    keys = sorted(states)
    lo = start or parse_partition_key(keys[0], spec.grain).start
    hi = end or parse_partition_key(keys[-1], spec.grain).start
    partitions = partitions_between(lo, hi, spec.grain)
    in_range = {p.key for p in partitions}
    states = {k: s for k, s in states.items() if k in in_range}
    counts = Counter(s.status.value for s in states.values())
    failed = sorted((k, s.error or "") for k, s in states.items() if s.status is Status.FAILED)
    checks = {k: s.check_name for k, s in states.items() if s.status is Status.FAILED and s.check_name}
    stale = sorted(k for k, s in states.items() if s.status is Status.COMPLETE and s.fingerprint != spec.fingerprint)
    undone = sorted((k, s.undone_run or "") for k, s in states.items() if s.status is Status.UNDONE)
    # "Running" only for a run whose lease is live: a killed run's claims are interrupted, not running.
    # Live runs on the target, of any pipeline writing it (an alias's run holds its partitions too).
    live = LeaseTable(lease_location(ledger_path)).live_runs(target_key(spec.target), pipeline)
    open_claims = {k: s for k, s in states.items() if s.status in (Status.PENDING, Status.RUNNING)}
    in_flight = {k: s for k, s in open_claims.items() if s.run_id in live}
    interrupted = sorted(set(open_claims) - set(in_flight))
    running = sum(1 for s in in_flight.values() if s.status is Status.RUNNING)
    eta = estimate(len(in_flight), [], max(1, running), history) if in_flight else None
    drift, drift_unknown = _drift_of(spec, [p.key for p in partitions], states)
    drifted = {f.partition: f for f in drift.findings} if drift is not None else {}
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": pipeline,
                    "fingerprint": spec.fingerprint,
                    "range": [partitions[0].key, partitions[-1].key],
                    "counts": {st.value: counts.get(st.value, 0) for st in Status},
                    "never_run": len(partitions) - len(states),
                    "failed": [{"partition": k, "error": e, "check": checks.get(k)} for k, e in failed],
                    "stale": stale,
                    "undone": [{"partition": k, "undone_run": r} for k, r in undone],
                    "eta_seconds": eta.seconds if eta else None,
                    "recorded": recorded,
                    "live_runs": [
                        {
                            "run_id": lease.run_id,
                            "pipeline": lease.pipeline,
                            "host": lease.holder.host,
                            "pid": lease.holder.pid,
                            "since": lease.started_at.isoformat(),
                            "slots": lease.slots,
                        }
                        for lease in live.values()
                    ],
                    "interrupted": interrupted,
                    "drifted": [f.to_dict() for f in drifted.values()],
                    "drift_checked": drift is not None,
                },
                indent=2,
            )
        )
        return
    table = Table("status", "partitions", title=f"{pipeline} {partitions[0].key} … {partitions[-1].key}")
    for st in Status:
        table.add_row(st.value, str(counts.get(st.value, 0)))
    table.add_row("never run", str(len(partitions) - len(states)))
    table.add_row("stale (older version)", str(len(stale)))
    table.add_row("drifted (table ≠ ledger)", str(len(drifted)) if drift is not None else "not checked")
    console.print(table)
    console.print(f"current version {spec.fingerprint}", highlight=False)
    for lease in live.values():
        of = f" of pipeline {lease.pipeline}" if lease.pipeline != pipeline else ""
        console.print(f"running backfill: {lease.describe()}{of}", highlight=False, soft_wrap=True)
    if eta is not None:
        console.print(f"  {len(in_flight)} partitions claimed by live runs: {eta}", highlight=False, soft_wrap=True)
    if interrupted:
        console.print(
            f"[yellow]INTERRUPTED[/] {len(interrupted)} partition(s) left PENDING/RUNNING by runs that are no longer "
            f"alive ({interrupted[0]} …): the next `backfill run` takes them over",
            highlight=False,
            soft_wrap=True,
        )
    _print_calendar(build_grid(partitions, states, spec.fingerprint, drifted))
    if drift_unknown:
        _say(f"drift not checked: {drift_unknown}", style="yellow")
    for key, finding in drifted.items():
        _say(f"DRIFTED {key}: {finding.detail}", style="red")
    if drift is not None and drift.repair_command:
        _say(f"  repair them with: {drift.repair_command} (see backfill audit {pipeline})")
    for key, error in failed:
        console.print(f"[red]FAILED[/] {key}: {error}", highlight=False, soft_wrap=True)
    if stale:
        shown = ", ".join(stale[:10]) + (" …" if len(stale) > 10 else "")
        console.print(f"[yellow]STALE[/] (written by an older version): {shown}", highlight=False, soft_wrap=True)
        console.print(f"  reprocess them with: backfill run {pipeline} --start {stale[0]} --end {stale[-1]}")
    if undone:
        keys = [k for k, _ in undone]
        runs = sorted({r[:8] for _, r in undone if r})
        shown = ", ".join(keys[:10]) + (" …" if len(keys) > 10 else "")
        console.print(
            f"[magenta]UNDONE[/] (restored to their content before run {', '.join(runs)}): {shown}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"  the next run reprocesses them: backfill run {pipeline} --start {keys[0]} --end {keys[-1]}")


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@app.command(epilog=_exit_codes_help())
def undo(
    pipeline: str,
    run_id: Annotated[
        str, typer.Option("--run", help="The run to undo: its id, or 8+ first characters of it (see backfill status).")
    ],
    partitions: Annotated[
        str | None, typer.Option("--partitions", help="Only these partition keys of the run (comma-separated).")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Only the run's partitions from here (inclusive).")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="… to here (inclusive).")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Also restore partitions a later commit changed (discarding that change).")
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask for confirmation (needed without a terminal).")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Restore the partitions a run wrote to their content before it (Delta time travel + replaceWhere, one
    commit), partition by partition. Refuses, with the reason, a partition a later commit changed (unless
    --force), one whose old files were vacuumed, and one the run did not write; exits 1 if it refused any.
    The next `backfill run` reprocesses the undone partitions."""
    from prefect_backfill.undoing import carry_out, prepare_undo, raise_if_refused

    prepared = prepare_undo(pipeline, run_id, partitions=_keys(partitions), start=start, end=end, force=force)
    the_plan = prepared.plan
    if not as_json:
        console.print(Text(str(the_plan)), soft_wrap=True, highlight=False)
    if the_plan.restores and not yes:
        if as_json or not _stdin_is_terminal():
            from prefect_backfill.errors import InvalidRequestError

            raise InvalidRequestError(
                "no terminal to confirm the undo in: pass --yes to restore without a prompt (nothing was written)"
            )
        if not typer.confirm(f"Restore {len(the_plan.restores)} partition(s) of {pipeline}?", default=False):
            _say("nothing was written", style="yellow")
            raise typer.Exit(1)
    outcome = _undo_unless_stopped(prepared, carry_out)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": the_plan.pipeline,
                    "run_id": the_plan.run_id,
                    "undo_id": outcome.undo_id,
                    "table_version": outcome.table_version,
                    "restored": [
                        {
                            "partition": r.partition,
                            "version": r.version,
                            "undoes_version": r.undoes_version,
                            "rows": r.rows,
                            "forced": r.overridden,
                        }
                        for r in the_plan.restores
                    ],
                    "refused": [
                        {"partition": r.partition, "reason": r.reason, "forceable": r.forceable}
                        for r in the_plan.refused
                    ],
                    "not_written": [{"partition": r.partition, "reason": r.reason} for r in the_plan.nothing_to_undo],
                },
                indent=2,
            )
        )
    elif outcome.restored:
        keys = outcome.restored
        _say(
            f"restored {len(keys)} partition(s) of {pipeline} in one commit (version {outcome.table_version}), "
            f"recorded as UNDONE; the next `backfill run {pipeline} --start {keys[0]} --end {keys[-1]}` "
            "reprocesses them",
            style="green",
        )
    raise_if_refused(prepared, outcome)


@app.command()
def diff(
    pipeline: str,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (or its first 8+ characters); default: the latest run.")
    ] = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Partitions shown before the total.")] = 10_000,
) -> None:
    """What a run changed: per partition it overwrote, rows and column sums before and after, and keys
    added, removed and changed when the pipeline declares a key. Reads only the ledger."""
    from prefect_backfill.diff import run_diffs, table_rows, totals
    from prefect_backfill.errors import InvalidRequestError
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    events = Ledger(ledger_location(spec, get_settings())).events(pipeline).to_pylist()
    runs = [e["run_id"] for e in events if e["status"] == "COMPLETE" and e.get("diff")]  # oldest first
    if not runs:
        raise InvalidRequestError(f"{pipeline}: no run has recorded a diff yet: run `backfill run {pipeline} …` first")
    if run_id is None:
        chosen = runs[-1]
    else:
        matches = sorted({r for r in runs if r == run_id or (len(run_id) >= 8 and r.startswith(run_id))})
        if len(matches) != 1:
            known = ", ".join(sorted(set(runs), key=runs.index)[-5:])
            what = "matches several runs" if matches else "is not a run of this pipeline with a recorded diff"
            raise InvalidRequestError(f"--run {run_id} {what}: give one of {known}")
        chosen = matches[0]
    diffs = run_diffs(events, chosen)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": pipeline,
                    "run_id": chosen,
                    "partitions": [d.as_dict() for d in diffs],
                    "total": totals(diffs).as_dict(),
                },
                indent=2,
            )
        )
        return
    head, rows = table_rows(diffs, limit=limit)
    table = Table(*head, title=f"{pipeline}: what run {chosen} changed (before → after)")
    for row in rows[:-1]:
        table.add_row(*row)
    table.add_row(*[f"[bold]{cell}[/]" for cell in rows[-1]])
    # Piped into a file or a log, a wide table must not be folded to 80 columns: nobody resizes a file.
    (console if console.is_terminal else Console(width=240)).print(table)


def _drift_of(spec: Any, keys: Sequence[str], states: Any) -> tuple[Any, str]:
    """The audit of ``keys`` for ``status`` (None when nothing is complete), or why it could not be made:
    status is a view, so an unreadable target log is said, not raised."""
    from prefect_backfill.audit import audit, read_target
    from prefect_backfill.errors import one_line

    if not any(s.status is Status.COMPLETE for s in states.values()):
        return None, ""
    try:
        target = read_target(spec)
    except Exception as exc:
        return None, f"the target's log cannot be read ({one_line(exc, 200)})"
    if not target.known:
        return None, f"the log of {spec.target} gives no partitions by {spec.partition_column}"
    return audit(spec.name, str(spec.target), keys, states, target), ""


@app.command(epilog=_exit_codes_help())
def audit(
    pipeline: str,
    start: Start = None,
    end: End = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (also for errors).")] = False,
) -> None:
    """Compare the ledger with the target table: partitions COMPLETE in the ledger that are missing or
    empty in the table, whose rows differ from the Delta log's statistics, or that another writer rewrote
    after our commit. Exits 0 when clean, 1 when the data drifted (the next plain `backfill run` repairs
    it). Reads the ledger and the target's log: no Spark for a path target. Writes nothing."""
    report = _audit_report(pipeline, start, end)  # an error under --json: printed as JSON by run_cli
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_audit(report)
    if not report.clean:
        raise typer.Exit(1)


def _audit_report(pipeline: str, start: str | None, end: str | None) -> Any:
    from prefect_backfill.audit import audit as audit_partitions
    from prefect_backfill.audit import read_target
    from prefect_backfill.errors import InvalidRequestError, TargetLayoutError
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import parse_partition_key, partitions_between
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    ledger_path = ledger_location(spec, get_settings())
    states = Ledger(ledger_path).current(pipeline)
    if not states:
        raise InvalidRequestError(
            f"{pipeline} has no events in its ledger {ledger_path} (missing or empty): nothing to audit; "
            f"run a backfill first (backfill run {pipeline} --start … --end …) or check BACKFILL_LEDGER_PATH"
        )
    keys = sorted(states)
    lo = start or parse_partition_key(keys[0], spec.grain).start
    hi = end or parse_partition_key(keys[-1], spec.grain).start
    partitions = [p.key for p in partitions_between(lo, hi, spec.grain)]
    target = read_target(spec)
    if not target.known:
        raise TargetLayoutError(
            f"the log of target {spec.target} gives no partitions by {spec.partition_column} (not partitioned by "
            "it, or a storage delta-rs cannot open): the audit cannot compare it with the ledger"
        )
    return audit_partitions(spec.name, str(spec.target), partitions, states, target)


def _print_audit(report: Any) -> None:
    span = f"{report.partitions[0]} … {report.partitions[-1]}" if report.partitions else "(empty range)"
    at = f" at version {report.target_version}" if report.target_version is not None else ""
    _say(f"audit of {report.pipeline} {span}: target {report.target}{at}")
    _say(f"  {report.checked} complete partition(s) compared with the table: {len(report.findings)} drifted")
    if report.findings:
        table = Table("partition", "drift", "the ledger says", "the table holds")
        for f in report.findings:
            table.add_row(f.partition, f.kind.value, f.ledger_says, f.table_holds)
        console.print(table, highlight=False)
    if report.unverified:
        _say(
            f"  {len(report.unverified)} partition(s) have no recorded target digest (written by an older release, "
            "or a catalog target): presence and rows checked; a rewrite with the same row count cannot be told "
            "until they are written again",
            style="yellow",
        )
    if report.clean:
        _say("clean: the table holds what the ledger says", style="green")
        return
    _say(
        f"DRIFT: {len(report.findings)} partition(s) no longer hold what the ledger recorded: a finding about the "
        "data (another writer changed the table), not an error of this tool; they are due again under the "
        "default policy",
        style="red",
    )
    _say(f"repair with: {report.repair_command}")


def _print_calendar(grid: Any) -> None:
    """Month grids side by side, each day marked by its status (the same grid as the UI artifact)."""
    from rich.columns import Columns

    from prefect_backfill.calendar import legend
    from prefect_backfill.partitions import Grain

    tables = []
    for title, weeks in grid.months:
        if grid.grain is Grain.MONTH:
            month_table = Table(*[f"{m:02d}" for m in range(1, 13)], title=title, box=None, pad_edge=False)
        else:
            month_table = Table("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su", title=title, box=None, pad_edge=False)
        for week in weeks:
            month_table.add_row(*[f"{cell[0]:>2}{cell[1].mark}" if cell else "" for cell in week])
        tables.append(month_table)
    console.print(Columns(tables, padding=(0, 3)))
    console.print(legend(grid.totals), highlight=False, soft_wrap=True)


@app.command()
def setup() -> None:
    """Fetch Delta's jars from Maven Central into the project cache and check Spark + Delta start."""
    from prefect_backfill.engine.spark import DELTA_PACKAGE, get_spark
    from prefect_backfill.settings import get_settings

    spark = get_spark()
    console.print(
        f"Spark {spark.version} with {DELTA_PACKAGE} ready (jars cached in {get_settings().ivy_dir})",
        highlight=False,
    )


@app.command("spark-connect")
def spark_connect(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 15002,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for other hosts).")] = "127.0.0.1",
    print_only: Annotated[bool, typer.Option("--print", help="Print the command line instead of running it.")] = False,
) -> None:
    """Run a Spark Connect server with Delta's jars (from pyspark's own launcher), for
    BACKFILL_SPARK_REMOTE=sc://HOST:PORT clients. Runs in the foreground; stop it with Ctrl-C."""
    import os
    import shlex

    from prefect_backfill.engine.spark import connect_server_command, java_home, spark_home
    from prefect_backfill.settings import get_settings

    command = connect_server_command(get_settings(), port, host)
    if print_only:
        print(shlex.join(command))
        return
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "JAVA_HOME": java_home()}
    console.print(f"Spark Connect on sc://{host}:{port} (Ctrl-C stops it)", highlight=False)
    os.execvpe(command[0], command, env)


@app.command()
def demo(
    rows_per_day: Annotated[int, typer.Option("--rows-per-day", min=1)] = 2_000,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 2,
    regenerate: Annotated[
        bool, typer.Option("--regenerate", help="Rewrite the bronze table and silver's version 1.")
    ] = False,
) -> None:
    """Create the demo bronze table and the silver table version 1 wrote (once each), then backfill
    demo_orders version 2 over 2024-01-01 … 2024-06-30: three canaries first, then the rest, and the diff."""
    from prefect_backfill import demo as demo_module
    from prefect_backfill.engine.delta import SparkDeltaEngine
    from prefect_backfill.pipeline import TableRef

    engine = SparkDeltaEngine.instance()
    if regenerate or not engine.describe(TableRef(demo_module.bronze_path())).exists:
        rows = demo_module.generate_orders(demo_module.bronze_path(), rows_per_day=rows_per_day)
        console.print(f"wrote {rows:,} bronze orders to {demo_module.bronze_path()}", highlight=False)
    if regenerate or not engine.describe(TableRef(demo_module.silver_path())).exists:
        rows = demo_module.write_version_one(demo_module.bronze_path(), demo_module.silver_path())
        console.print(
            f"wrote {rows:,} silver orders with version 1 (the bug: amount_usd = amount) to "
            f"{demo_module.silver_path()}",
            highlight=False,
        )
    # Three canaries (first, middle, last day) go first and their diff is shown; --approve: the demo
    # runs unattended (`backfill run demo_orders … --canary 3` without it asks on a terminal).
    try:
        run(
            "demo_orders",
            demo_module.DEMO_START,
            demo_module.DEMO_END,
            max_concurrency=max_concurrency,
            canary=3,
            approve=True,
        )
    finally:
        with contextlib.suppress(BackfillError):
            diff("demo_orders", limit=6)


def _exception_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from typer's vendored click (``typer._click``, typer >= 0.29), typer itself and the
    ``click`` package, whichever are installed: typer 0.29 raises its own copies, not click's."""
    found: list[type[BaseException]] = []
    for module_name in ("typer._click.exceptions", "typer.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


def _param_name(param: Any) -> str:
    """``--max-concurrency`` for an option, ``PIPELINE`` for an argument."""
    opts = [o for o in getattr(param, "opts", None) or () if isinstance(o, str)]
    if getattr(param, "param_type_name", "") == "option" and opts:
        return next((o for o in opts if o.startswith("--")), opts[0])
    return str(getattr(param, "metavar", None) or getattr(param, "name", None) or "value").upper()


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _bad_value(exc: Any, param: Any) -> str:
    """What is wrong with a parameter's value, from the validation error typer raised it from."""
    message = _first_line(str(getattr(exc, "message", "") or exc)).rstrip(".")
    cause = exc.__cause__
    errors = cause.errors() if cause is not None and hasattr(cause, "errors") else []
    if errors and "input" in errors[0]:
        value, kind = errors[0]["input"], str(errors[0].get("type", ""))
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than") and (
            low is not None or high is not None
        ):
            span = (
                f"{low}<=x<={high}"
                if low is not None and high is not None
                else f"x>={low}"
                if high is None
                else f"x<={high}"
            )
            return f"{value} is not in the range {span}"
        return f"{value!r}: {_lower_first(message)}"
    return _lower_first(message)


def _command_names() -> list[str]:
    return [c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands]


def _usage_message(exc: Any, args: Sequence[str]) -> str:
    """A click/typer usage error as one line: what is wrong, and where the help is."""
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command", None)
    path = getattr(ctx, "command_path", None)
    if not path:  # the option parser raises some errors without a context: find the command in args
        named = next((a for a in args if not a.startswith("-")), None)
        path = f"backfill {named}" if named in _command_names() else "backfill"
    commands = list(getattr(command, "commands", None) or ())
    param = getattr(exc, "param", None)
    option = getattr(exc, "option_name", None)
    kind = type(exc).__name__
    message = _first_line(exc.format_message() if hasattr(exc, "format_message") else str(exc))
    if kind == "NoArgsIsHelpError":
        what = f"no command given: use one of {', '.join(commands)}" if commands else "arguments are missing"
    elif kind == "MissingParameter" and param is not None:
        what = f"missing {getattr(param, 'param_type_name', 'parameter')} {_param_name(param)}"
    elif param is not None:
        what = f"{_param_name(param)}: {_bad_value(exc, param)}"
    elif kind == "NoSuchOption" and option:
        close = sorted(getattr(exc, "possibilities", None) or ())
        what = f"no such option {option}" + (f": did you mean {' or '.join(close)}?" if close else "")
        if option in ("--verbose", "-v"):
            what += " (global options go before the command: backfill --verbose run …)"
    elif kind == "BadOptionUsage" and option and "requires" in message:
        what = f"{option}: the value is missing"
    else:
        what = _lower_first(message)
        what = what if what.endswith("?") else what.rstrip(".")
        if commands and what.startswith(("no such command", "missing command")) and "?" not in what:
            what += f": use one of {', '.join(commands)}"
    return f"{what} (see {path} --help)"


def _error(message: str, exc: BaseException | None = None, code: int = 1) -> None:
    """Print ``error: message`` as one line on stderr; with --verbose, the traceback before it. Under
    ``--json`` the error is also one JSON object on stdout (``{"error": …, "kind": …, "exit_code": …}``),
    so that a script reading the output gets JSON whatever happened, and a person still reads the line."""
    if exc is not None and _options["verbose"]:
        traceback.print_exception(exc, file=sys.stderr)
    if _options["json"]:
        kind = type(exc).__name__ if isinstance(exc, BackfillError) else "UsageError" if code == 2 else "Error"
        print(json.dumps({"error": message, "kind": kind, "exit_code": code}))
    err_console.print(Text.assemble(("error:", "red"), " ", message))


def run_cli(args: Sequence[str] | None = None) -> int:
    """Run the ``backfill`` app on ``args`` (default: the command line) and return its exit code,
    every error already printed as one line. What :func:`main` exits with."""
    argv = list(args) if args is not None else sys.argv[1:]
    usage_errors = _exception_classes("UsageError")
    other_click_errors = _exception_classes("ClickException")
    exits = _exception_classes("Exit")
    aborts = _exception_classes("Abort")
    _options.update(verbose=False, interrupt_reported=False, terminated=False, json="--json" in argv)
    try:
        with _sigterm_interrupts():
            # standalone_mode=False: exceptions come here instead of click's multi-line usage blocks and
            # tracebacks; typer then *returns* an exit code (130 after Ctrl-C) instead of raising it.
            result = app(args=argv, prog_name="backfill", standalone_mode=False)
    except BackfillError as exc:
        _error(str(exc), exc, exc.exit_code)
        return exc.exit_code
    except usage_errors as exc:
        code = int(getattr(exc, "exit_code", 2) or 2)
        _error(_usage_message(exc, argv), code=code)  # no traceback even with --verbose: it is the input
        return code
    except other_click_errors as exc:
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        code = int(getattr(exc, "exit_code", 1) or 1)
        _error(_lower_first(_first_line(text)), exc, code)
        return code
    except exits as exc:
        result = getattr(exc, "exit_code", 0)
    except aborts as exc:
        _error("aborted", exc)
        return 1
    except KeyboardInterrupt:
        result = _interrupt_code()
    except Exception as exc:
        first = _first_line(str(exc))
        what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        _error(what if _options["verbose"] else f"{what} (run with --verbose for the traceback)", exc)
        return 1
    code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    if code == 130:  # typer's code for any KeyboardInterrupt, SIGTERM's included
        code = _interrupt_code()
    if code in (130, 143) and not _options["interrupt_reported"]:
        err_console.print("interrupted")
    return code


def _interrupt_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM (128 + the signal's number, the shell's convention)."""
    return 128 + (signal.SIGTERM if _options["terminated"] else signal.SIGINT)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (a worker cancelling, ``kill``) unwinds a command like Ctrl-C does, instead of killing the
    process with no word: one line, exit 143. A running backfill takes both signals over while its flow
    runs (:mod:`prefect_backfill.stopping`) and stops in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        _options["terminated"] = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main() -> None:
    """Entry point (``backfill``): one-line errors for everything the user can get wrong, and the exit
    codes of :data:`~prefect_backfill.errors.EXIT_CODES`."""
    code = run_cli()
    if code in (130, 143):
        # Interrupted: what the run did is recorded and said. Leave at once, as a signal would: the
        # interpreter's teardown could wait on a JVM still starting in a warm-up thread, or on Prefect's
        # services, after the user asked to stop. The JVM and the embedded server end with this process.
        with contextlib.suppress(Exception):
            logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        sys.exit(code)
