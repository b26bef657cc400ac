"""``backfill run``: plan, start Spark and the embedded server side by side, run the flow in this
process, stop in order on Ctrl-C / SIGTERM, and exit with what happened to the partitions."""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import typer

from prefect_backfill.cli.app import _exit_codes_help, _options, _say, app, console
from prefect_backfill.cli.entry import _interrupt_code
from prefect_backfill.cli.live import _flush, _LedgerProgress, _print_summary, _quiet_cancelled_jobs
from prefect_backfill.cli.request_options import RUN_FIELDS, request_options
from prefect_backfill.errors import BackfillError
from prefect_backfill.planning import Status
from prefect_backfill.request import BackfillRequest

if TYPE_CHECKING:
    from prefect_backfill.canary import Decision
    from prefect_backfill.embedded import EmbeddedServer
    from prefect_backfill.preparing import PreparedRun
    from prefect_backfill.results import BackfillSummary


def run_request(request: BackfillRequest) -> None:
    """Backfill PIPELINE from --start to --end (inclusive) as a Prefect flow run.

    Ctrl-C (or SIGTERM) stops taking partitions and cancels the running Spark jobs (their partitions stay
    PENDING), says how far the run got and prints the command that resumes; exit 130 (143), within 20 s.
    A second Ctrl-C exits at once. Nothing is ever half-written: each chunk is one Delta commit."""
    from prefect_backfill import phases, stopping
    from prefect_backfill.embedded import start_embedded_server
    from prefect_backfill.preparing import handing_over, prepare

    pipeline = request.pipeline
    began = time.perf_counter()
    gated = bool(request.canary or request.canary_partitions) and not request.approve
    if gated and not console.is_terminal and not _prefect_server():
        from prefect_backfill.errors import InvalidRequestError

        raise InvalidRequestError(
            "--canary: no one can answer the canary gate here (no terminal, and the embedded Prefect server has no "
            "UI you can reach): add --approve, or set PREFECT_API_URL to a Prefect server and approve in its UI"
        )
    # Validate and plan before Prefect starts: bad input fails fast and writes nothing.
    with phases.phase("prepare"):  # settings, the pipeline, the ledger and both tables' logs read, the plan
        prepared = prepare(request)
    console.print(str(prepared.plan), highlight=False, soft_wrap=True)
    if not prepared.plan.to_run:
        # Nothing to do costs nothing: no Prefect server, no flow run, no Spark. The ledger already says
        # everything this run would have said; the exit code is the flow's (4 if a live run holds some).
        summary = prepared.summary_without_work(time.perf_counter() - began)
        _print_summary(summary)
        code = _outcome(prepared, summary)
        if code:
            raise typer.Exit(code)
        return
    since = datetime.now(UTC)
    ask_here = gated and console.is_terminal
    stopping.set_last_words(lambda _: _report_interrupt(prepared, since))  # before a forced exit
    # From the plan on, a signal stops the run in order wherever it is (starting Spark or the server, or
    # in the flow): never a KeyboardInterrupt in the middle of a start-up; forced within 20 s at most.
    stop_scope = stopping.stop_on_signals(lambda _: _cancel_running(prepared))
    stop_scope.__enter__()
    try:
        # Ctrl-C is for this process: the server must see the run end (None: PREFECT_API_URL is set)
        # Side by side: Spark's start and the target's check (a thread), the embedded server's start (a
        # process), and the flow's imports (this thread, while the other two start).
        warming = _warm_up(prepared)
        with phases.phase("server spawn"):
            server = start_embedded_server()
        from prefect_backfill.run_state import heartbeats, load_flow

        with phases.phase("load flow"):
            backfill = load_flow()
        _ready(warming, server)

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
            handing_over(prepared),  # the flow runs in this call: it takes this plan rather than planning again
            phases.phase("flow call"),
        ):
            # The flow's parameters are the request's fields, by name (one source of truth).
            state = backfill(**request.model_dump(mode="json"), return_state=True)
    except KeyboardInterrupt:  # a signal before the flow took over its signals, or after
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
    from prefect_backfill.run_state import failed_by_server

    if gated and failed_by_server(state):
        # Prefect fails a paused run whose pause timed out itself, before the flow's own CanaryStoppedError
        # can become the run's state: say it the way the flow would have, with its exit code.
        from prefect_backfill.errors import CanaryStoppedError

        raise CanaryStoppedError(
            f"stopped at the canary gate, no answer within {request.canary_timeout_s} s: the canaries are written "
            f"(`backfill diff {pipeline}` shows them, `backfill undo` restores them); the rest was not started; "
            f"the same command runs new canaries: {prepared.resume_command}"
        )
    # raises BackfillFailedError (one line, exit 1) if partitions failed
    summary = cast("BackfillSummary", state.result())
    with phases.phase("summary"):
        _print_summary(summary)
    code = _outcome(prepared, summary)
    if code:
        raise typer.Exit(code)


#: ``backfill run``: every field of the request as an option.
run = app.command("run", epilog=_exit_codes_help())(request_options(RUN_FIELDS)(run_request))


def _cancel_running(prepared: PreparedRun) -> None:
    """On a stop signal: cancel the pipeline's Spark jobs in this process (none if Spark has not started)."""
    from prefect_backfill.engine import get_engine

    get_engine().cancel(prepared.pipeline)


def _prefect_server() -> bool:
    """Is this process talking to a Prefect server (PREFECT_API_URL), rather than starting the embedded one?"""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def _ask_at_the_gate(diff_text: str) -> Decision:
    """The canary gate on the terminal: show what the canaries changed, ask whether to go on."""
    from rich.markdown import Markdown  # 0.1 s of imports (markdown-it): only for the gate

    from prefect_backfill.canary import DecidedBy, Decision

    console.print(Markdown(diff_text))
    approved = typer.confirm("Write the rest of the range with this version?", default=False)
    return Decision(approved, DecidedBy.TERMINAL)


#: The least time the embedded server is given to answer (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
#: can give it more).
SERVER_START_BOUND_S = 120


@dataclass
class _WarmUp:
    """Spark's start and the target's check, running in a thread (see :func:`_warm_up`)."""

    thread: threading.Thread
    failed: list[BackfillError]  # what the thread found wrong in the pipeline's declarations


def _warm_up(prepared: PreparedRun) -> _WarmUp | None:
    """Before the flow starts: start Spark and check the pipeline's declarations against the target
    (``ensure_target``: the transform on an empty input, its checks and key, the target's layout; it
    creates the target if missing) in a thread, while this thread starts Prefect's embedded server and
    imports the flow (:func:`_ready` waits for both). Spark's start is the longest of these (docs/fixed-
    cost-benchmarks.md), so it begins first. A definition error is then one line with its exit code, before
    any flow run exists, instead of a flow failure with Prefect's traceback above it.

    None where the chunks do not run in this process (another runner or engine) or there is no work.
    Errors that are not the pipeline's (Spark failing in some other way) are left to the flow's own
    ``ensure_target``."""
    from prefect_backfill import phases
    from prefect_backfill.settings import get_settings

    settings = get_settings()
    if not prepared.plan.to_run or settings.engine != "spark" or settings.task_runner != "thread":
        return None
    failed: list[BackfillError] = []

    def warm() -> None:
        from prefect_backfill.engine import get_engine

        try:
            with phases.phase("warm-up: Spark and the target"):
                get_engine().ensure_target(prepared.pipeline)
        except BackfillError as exc:
            failed.append(exc)
        except Exception:  # the flow's own ensure_target raises it, at its usual place
            pass

    thread = threading.Thread(target=warm, name="backfill-warm-up", daemon=True)
    thread.start()
    return _WarmUp(thread, failed)


def _ready(warming: _WarmUp | None, server: EmbeddedServer | None) -> None:
    """Wait for the embedded server to answer (the flow's first request goes to it) and for the warm-up;
    raise the pipeline's definition error the warm-up found, if any."""
    from prefect.settings import get_current_settings

    from prefect_backfill import phases

    if server is not None:
        # A hang bound, not a speed: a new PREFECT_HOME migrates its database first (17-30 s seen on a busy
        # machine, over Prefect's default of 20 s), and failing a run for a slow first start helps no one.
        timeout = max(get_current_settings().server.ephemeral.startup_timeout_seconds, SERVER_START_BOUND_S)
        with phases.phase("server wait"):
            server.wait_ready(timeout)
    if warming is not None:
        with phases.phase("warm-up wait"):
            warming.thread.join()
        if warming.failed:
            raise warming.failed[0]


def _outcome(prepared: PreparedRun, summary: BackfillSummary) -> int:
    """Exit code of a run that raised nothing: 4 if partitions were left to another live run, 3 if the
    night window closed before every partition started, else 0 (see EXIT_CODES). Told by the summary's
    fields, not by the name of the state the flow ended in."""
    held, not_started = summary.held, summary.not_started
    command = prepared.resume_command
    if held:
        _say(
            f"{len(held)} partition(s) were left to another live run: rerun when it ends ({command})",
            style="yellow",
        )
    if not_started:
        _say(
            f"window closed: {len(not_started)} partitions remain; the next run resumes (or now: {command})",
            style="yellow",
        )
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
