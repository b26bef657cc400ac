"""The CLI's contract, in process: the resume command reproduces the request exactly, every outcome of a
run has its exit code and its line, and unexpected errors are one line unless --verbose.

The flow itself is replaced by a stand-in (these tests are about the CLI around it; the real flow
under Ctrl-C is tests/integration/test_cli_interrupt.py); the request, the plan and the ledger are real.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import typer

import flows.backfill
import prefect_backfill.preparing
from prefect_backfill.cli import run_cli
from prefect_backfill.errors import (
    EXIT_CODES,
    BackfillFailedError,
    ConfigurationError,
    CoordinationTimeoutError,
    InvalidRequestError,
    LedgerError,
    RunStoppedError,
    UnknownPipelineError,
)
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Status
from prefect_backfill.preparing import PreparedRun
from prefect_backfill.registry import register
from prefect_backfill.request import BackfillRequest
from prefect_backfill.results import BackfillSummary

EVERY_FIELD = BackfillRequest(
    pipeline="orders",
    start="2024-01-01",
    end="2024-01-31",
    reprocess="all",  # type: ignore[arg-type]
    max_concurrency=3,
    retries=0,
    retry_delay_seconds=2.5,
    exclude=("2024-01-05", "2024-01-06"),
    newest_first=True,
    chunk_mb=64.0,
    chunk_partitions=4,
    yes=True,
    window_end="2030-07-01 06:00",
    timezone="Europe/Amsterdam",
    canary=3,
    canary_partitions=("2024-01-02", "2024-01-20"),
    approve=True,
    canary_timeout_s=60,
    cascade="none",  # type: ignore[arg-type]
)


def _resume_command(request: BackfillRequest) -> str:
    prepared = PreparedRun(request, cast(Any, None), (), cast(Any, None), cast(Any, None))
    return prepared.resume_command


def test_the_resume_command_names_every_field_that_differs_from_its_default() -> None:
    assert _resume_command(EVERY_FIELD) == (
        "backfill run orders --start 2024-01-01 --end 2024-01-31 --reprocess all --max-concurrency 3 --retries 0 "
        "--retry-delay 2.5 --exclude 2024-01-05 --exclude 2024-01-06 --newest-first --chunk-mb 64.0 "
        "--chunk-partitions 4 --yes "
        "--window-end '2030-07-01 06:00' --timezone Europe/Amsterdam "
        "--canary 3 --canary-partitions 2024-01-02,2024-01-20 --approve --canary-timeout 60 --cascade none"
    )
    assert _resume_command(BackfillRequest(pipeline="orders", partitions=("2024-01-03", "2024-01-01"))) == (
        "backfill run orders --partitions 2024-01-03,2024-01-01"
    )
    assert _resume_command(BackfillRequest(pipeline="orders", start="2024-01-01", end="2024-01-02")) == (
        "backfill run orders --start 2024-01-01 --end 2024-01-02"
    )


def test_every_request_field_has_a_flag() -> None:
    """A new field without a flag would be silently dropped from every resume command."""
    flagged = {arg for arg in EVERY_FIELD.cli_args() if arg.startswith("--")}
    fields = set(BackfillRequest.model_fields) - {"pipeline", "partitions"}
    assert len(flagged) == len(fields), (flagged, fields)
    assert "--partitions" in BackfillRequest(pipeline="p", partitions=("2024-01-01",)).cli_args()


@pytest.mark.parametrize(
    "request_",
    [
        EVERY_FIELD,
        BackfillRequest(pipeline="orders", partitions=("2024-01-03", "2024-01-01"), reprocess="failed"),  # type: ignore[arg-type]
        BackfillRequest(pipeline="orders", start="2024-01-01T05", end="2024-01-02", window_end="06:00"),
        BackfillRequest(pipeline="orders", start="2024-01-01", end="2024-01-02", retry_delay_seconds=0.1),
    ],
)
def test_the_printed_resume_command_parses_back_into_the_same_request(
    monkeypatch: pytest.MonkeyPatch, request_: BackfillRequest
) -> None:
    seen: list[BackfillRequest] = []

    def capture(request: BackfillRequest, settings: object = None) -> PreparedRun:
        seen.append(request)
        raise typer.Exit(0)

    monkeypatch.setattr(prefect_backfill.preparing, "prepare", capture)
    argv = shlex.split(_resume_command(request_))
    assert argv[:2] == ["backfill", "run"]
    assert run_cli(argv[1:]) == 0
    assert seen == [request_]


# --- a run's outcome -> exit code, with a stand-in for the flow -----------------------------------------


def keep(df):  # type: ignore[no-untyped-def]
    return df


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    """A registered pipeline over a real (tiny) Delta source written with delta-rs: no JVM."""
    from datetime import date

    import pyarrow as pa
    from deltalake import write_deltalake

    write_deltalake(str(tmp_path / "bronze"), pa.table({"d": [date(2024, 1, 1)], "x": [1]}), partition_by=["d"])
    return register(
        Pipeline("cli_outcomes", str(tmp_path / "bronze"), str(tmp_path / "silver" / "t"), "d", keep, "1"),
        replace=True,
    )


class FakeState:
    def __init__(self, summary: Any, name: str = "Completed", message: str | None = None) -> None:
        self.summary, self.name, self.message = summary, name, message

    def result(self, raise_on_failure: bool = True) -> Any:
        return self.summary

    def is_cancelled(self) -> bool:
        return isinstance(self.summary, RunStoppedError)

    def is_failed(self) -> bool:
        return False


def summary(**kw: Any) -> BackfillSummary:
    """The flow's typed summary; lists given as lists, as a test reads them."""
    base: dict[str, Any] = {"pipeline": "cli_outcomes", "run_id": "", "start": "", "end": "", "fingerprint": ""}
    base |= {"total": 3, "skipped": 0, "rows_written": 0, "duration_s": 0.1}
    return BackfillSummary(**base | {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()})


ARGS = ["run", "cli_outcomes", "--start", "2024-01-01", "--end", "2024-01-03", "--chunk-partitions", "2"]
RESUME = "backfill run cli_outcomes --start 2024-01-01 --end 2024-01-03 --chunk-partitions 2"


@pytest.mark.parametrize(
    ("state", "code", "line"),
    [
        (FakeState(summary(completed=["2024-01-01", "2024-01-02", "2024-01-03"])), 0, None),
        (FakeState(summary(completed=["2024-01-01"], held=[])), 0, None),
        (
            FakeState(summary(completed=["2024-01-01"], held=["2024-01-02", "2024-01-03"])),
            4,
            f"2 partition(s) were left to another live run: rerun when it ends ({RESUME})",
        ),
        (
            FakeState(
                summary(completed=["2024-01-01"], not_started=["2024-01-02", "2024-01-03"]),
                name="WindowClosed",
                message="window closed: 2 partitions remain; the next run resumes",
            ),
            3,
            f"window closed: 2 partitions remain; the next run resumes (or now: {RESUME})",
        ),
        (  # both: the held partitions decide (another run is still at work)
            FakeState(summary(held=["2024-01-02"], not_started=["2024-01-03"]), name="WindowClosed", message="w"),
            4,
            f"1 partition(s) were left to another live run: rerun when it ends ({RESUME})",
        ),
        (  # stopped by a signal: the flow ends Cancelled with its summary; the signal gives the code
            FakeState(RunStoppedError("stopped", summary(stopped="SIGINT", not_started=["2024-01-02"]), 130)),
            130,
            f"interrupted: 0 of 3 planned partitions complete, 3 left; resume with: {RESUME}",
        ),
        (
            FakeState(RunStoppedError("stopped", summary(stopped="SIGTERM", not_started=["2024-01-03"]), 143)),
            143,
            f"interrupted: 0 of 3 planned partitions complete, 3 left; resume with: {RESUME}",
        ),
    ],
)
def test_a_runs_outcome_is_its_exit_code(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    state: FakeState,
    code: int,
    line: str | None,
) -> None:
    calls: list[dict[str, Any]] = []

    def flow(**params: Any) -> FakeState:
        calls.append(params)
        return state

    monkeypatch.setattr(flows.backfill, "backfill", flow)
    assert run_cli(ARGS) == code
    out = capsys.readouterr().out
    if line is not None:
        assert line in out.splitlines()
    assert "cli_outcomes: " in out  # the summary line
    # The flow gets the request's fields by name, JSON-ready (as a deployment would).
    assert calls[0]["chunk_partitions"] == 2 and calls[0]["retry_delay_seconds"] == 5.0 and calls[0]["partitions"] == []
    assert calls[0]["reprocess"] == "missing" and calls[0].pop("return_state") is True
    assert set(calls[0]) == set(BackfillRequest.model_fields)


def test_failed_partitions_exit_1_with_the_resume_command(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Failed(FakeState):
        def result(self) -> dict[str, Any]:
            raise BackfillFailedError("cli_outcomes", [("2024-01-02", "boom")], RESUME)

    monkeypatch.setattr(flows.backfill, "backfill", lambda **params: Failed({}))
    assert run_cli(ARGS) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: 1 partition(s) of cli_outcomes failed (2024-01-02: boom). Resume with: {RESUME}"
    ]


def test_ctrl_c_during_a_run_counts_what_completed_since_it_started_and_prints_the_resume_command(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = Ledger(tmp_path / "silver" / "_backfill_progress")

    def event(key: str, status: Status, when: datetime) -> LedgerEvent:
        return LedgerEvent("r", pipeline.name, key, status, "1", pipeline.fingerprint, event_time=when)

    # 2024-01-01 failed before this run (so it is planned); it and 2024-01-02 complete during the run,
    # 2024-01-03 is still running when Ctrl-C comes.
    ledger.record([event("2024-01-01", Status.FAILED, datetime.now(UTC) - timedelta(days=1))])

    def interrupted(**params: Any) -> FakeState:
        now = datetime.now(UTC)
        ledger.record(
            [
                event("2024-01-01", Status.COMPLETE, now),
                event("2024-01-02", Status.COMPLETE, now),
                event("2024-01-03", Status.RUNNING, now),
            ]
        )
        raise KeyboardInterrupt

    monkeypatch.setattr(flows.backfill, "backfill", interrupted)
    assert run_cli(ARGS) == 130
    out = capsys.readouterr()
    assert out.out.splitlines()[-1] == (
        f"interrupted: 2 of 3 planned partitions complete, 1 left; resume with: {RESUME}"
    )
    assert out.err == ""


def test_ctrl_c_with_an_unreadable_ledger_still_prints_the_resume_command(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreadable(self: Ledger, name: str) -> None:
        raise OSError("disk gone")

    def interrupted(**params: Any) -> FakeState:
        monkeypatch.setattr(Ledger, "current", unreadable)
        raise KeyboardInterrupt

    monkeypatch.setattr(flows.backfill, "backfill", interrupted)
    assert run_cli(ARGS) == 130
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"interrupted: progress unknown (the ledger cannot be read: OSError: disk gone); resume with: {RESUME}"
    )


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidRequestError("bad range: fix it"), 2),
        (UnknownPipelineError("unknown pipeline 'x': did you mean 'y'?"), 2),
        (ConfigurationError("BACKFILL_X is wrong: set it"), 2),
        (CoordinationTimeoutError("gave up waiting for run abc: retry later"), 4),
        (LedgerError("ledger unreadable: check rights"), 1),
    ],
)
def test_backfill_errors_are_one_line_with_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: Exception, code: int
) -> None:
    def fail() -> None:
        raise error

    monkeypatch.setattr("prefect_backfill.registry.all_pipelines", fail)
    assert run_cli(["pipelines"]) == code
    out = capsys.readouterr()
    assert out.out == "" and out.err == f"error: {error}\n"


def test_an_unexpected_error_is_one_line_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail() -> None:
        raise ValueError("boom: the details\nline two of a long Java trace")

    monkeypatch.setattr("prefect_backfill.registry.all_pipelines", fail)
    assert run_cli(["pipelines"]) == 1
    assert capsys.readouterr().err == ("error: ValueError: boom: the details (run with --verbose for the traceback)\n")
    assert run_cli(["--verbose", "pipelines"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in fail\n" in err and "line two of a long Java trace" in err
    assert err.splitlines()[-1] == "error: ValueError: boom: the details"
    assert run_cli(["pipelines"]) == 1  # --verbose does not stick to the next invocation
    assert "Traceback" not in capsys.readouterr().err


def test_verbose_shows_the_cause_of_a_backfill_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_for_verbose.py").write_text("def f(:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BACKFILL_PIPELINE_MODULES", "broken_for_verbose")
    assert run_cli(["-v", "pipelines"]) == 2
    err = capsys.readouterr().err
    assert "SyntaxError: invalid syntax" in err and "The above exception was the direct cause" in err
    assert err.splitlines()[-1].startswith("error: cannot import pipeline module 'broken_for_verbose'")


def test_help_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["--help"]) == 0
    assert "Usage: backfill" in capsys.readouterr().out
    assert run_cli(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--retry-delay" in out and "Exit codes:" in out
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>3}  {meaning[:40]}" in out


def test_status_json_with_nothing_recorded(pipeline: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert run_cli(["status", pipeline.name, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {
        "pipeline": "cli_outcomes",
        "fingerprint": pipeline.fingerprint,
        "range": None,
        "counts": {"PENDING": 0, "RUNNING": 0, "COMPLETE": 0, "FAILED": 0, "UNDONE": 0, "STALE": 0},
        "never_run": 0,
        "failed": [],
        "stale": [],
        "undone": [],
        "upstream_stale": [],
        "eta_seconds": None,
        "recorded": False,
        "live_runs": [],
        "interrupted": [],
        "old_shape": [],
    }
    # With a range but nothing recorded: the usual document, every partition never run.
    assert run_cli(["status", pipeline.name, "--start", "2024-01-01", "--end", "2024-01-03", "--json"]) == 0
    ranged = json.loads(capsys.readouterr().out)
    assert ranged["recorded"] is False and ranged["never_run"] == 3 and ranged["range"] == ["2024-01-01", "2024-01-03"]


def test_the_terminal_is_spared_the_java_trace_of_a_job_cancelled_by_ctrl_c() -> None:
    import logging

    from prefect_backfill.cli.live import _CancelledJobFilter
    from prefect_backfill.errors import EngineCancelledError

    def record(error: BaseException | None) -> logging.LogRecord:
        info = (type(error), error, None) if error is not None else None
        return logging.LogRecord("prefect.task_runs", logging.ERROR, __file__, 1, "failed", (), info)

    # The job cancelled by Ctrl-C as the engine raises it: its type says so, whatever its words.
    cancelled = EngineCancelledError("org.apache.spark.SparkException: [SPARK_JOB_CANCELLED] Job 14 cancelled")
    quiet = _CancelledJobFilter()
    assert not quiet.filter(record(cancelled))
    assert quiet.filter(record(RuntimeError("[SPARK_JOB_CANCELLED] Job 3 cancelled by the user")))
    assert quiet.filter(record(ValueError("boom")))
    assert quiet.filter(record(None))


def test_py4j_tracebacks_stay_off_the_terminal_after_a_stop_even_once_the_stop_scope_closed() -> None:
    """A SIGTERM to the group also ends the JVM; a thread still talking to it after the flow ended had py4j
    log "Exception while sending command." with its traceback below the resume line (seen in a full test
    run). The filter keeps py4j's records off the terminal for the rest of the process after a stop."""
    import logging
    import signal

    import py4j.java_gateway

    from prefect_backfill import stopping
    from prefect_backfill.cli.live import _quiet_cancelled_jobs

    def py4j_record() -> logging.LogRecord:
        return logging.LogRecord(
            "root", logging.ERROR, py4j.java_gateway.__file__, 1, "Exception while sending command.", (), None
        )

    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with _quiet_cancelled_jobs():  # no stop: the filter goes with the block
            pass
        assert handler.filter(py4j_record())
        with stopping.stop_on_signals(lambda _: None), _quiet_cancelled_jobs():
            assert handler.filter(py4j_record())  # no stop yet: py4j may speak
            stopping._switch.request = stopping.StopRequest.from_signal(signal.SIGTERM)  # type: ignore[union-attr]
            assert not handler.filter(py4j_record())
        assert stopping.requested() is None  # the stop scope has closed ...
        assert not handler.filter(py4j_record())  # ... and py4j still stays off the terminal
    finally:
        root.removeHandler(handler)


def test_the_click_packages_own_exceptions_are_handled_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """typer 0.29 raises its vendored copies (typer._click); code that raises the click package's own
    classes (older typer, a plugin) must get the same treatment."""
    import click

    raised: list[BaseException] = []

    def fail() -> None:
        raise raised[-1]

    monkeypatch.setattr("prefect_backfill.registry.all_pipelines", fail)
    raised.append(click.UsageError("the thing is wrong. Fix it."))
    assert run_cli(["pipelines"]) == 2
    assert capsys.readouterr().err == "error: the thing is wrong. Fix it (see backfill pipelines --help)\n"
    raised.append(click.exceptions.Exit(3))
    assert run_cli(["pipelines"]) == 3
    raised.append(click.ClickException("cannot open the file"))
    assert run_cli(["pipelines"]) == 1
    assert capsys.readouterr().err == "error: cannot open the file\n"


def test_ctrl_c_outside_a_run_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """typer turns KeyboardInterrupt into a *returned* 130 under standalone_mode=False: it is the exit code."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("prefect_backfill.registry.all_pipelines", interrupted)
    assert run_cli(["pipelines"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_the_flow_takes_the_plan_the_cli_made_once(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI plans (to print it and refuse bad input early); the flow in the same process takes that
    plan instead of reading the ledger and the logs again, once."""
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.preparing import handed_over, handing_over, prepare

    reads: list[str] = []
    original = Ledger.read
    monkeypatch.setattr(Ledger, "read", lambda self, name: (reads.append(name), original(self, name))[1])
    request = BackfillRequest.build(pipeline=pipeline.name, start="2024-01-01", end="2024-01-02")
    made = prepare(request)
    again = BackfillRequest.build(**request.model_dump(mode="json"))  # as the flow rebuilds it
    with handing_over(made):
        assert prepare(again) is not made and len(reads) == 2  # only the flow takes it
        assert (handed_over(again) or prepare(again)) is made and len(reads) == 2
        assert (handed_over(again) or prepare(again)) is not made and len(reads) == 3  # taken once only
    with handing_over(made):
        assert handed_over(BackfillRequest.build(pipeline=pipeline.name, partitions=["2024-01-01"])) is None
    assert handed_over(again) is None  # scoped to the call that handed it over, never left behind


def test_a_canary_nobody_can_answer_is_refused_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a terminal, the embedded server: the run would write its canaries and then wait for nobody."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    planned: list[BackfillRequest] = []
    monkeypatch.setattr(prefect_backfill.preparing, "prepare", lambda request, settings=None: planned.append(request))
    with temporary_settings(updates={PREFECT_API_URL: None}):
        code = run_cli(["run", "orders", "--start", "2024-01-01", "--end", "2024-01-09", "--canary", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--approve" in err and "PREFECT_API_URL" in err
    assert not planned  # refused before planning: nothing read, nothing written


def test_a_gate_nobody_answered_in_time_exits_5_with_the_gates_own_line(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Prefect fails a run whose pause timed out ("never resumed") before the flow's CanaryStoppedError
    can be its state: the CLI still says what happened, with the gate's exit code."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    class TimedOut(FakeState):
        data = None  # a Failed the server set: no error of the flow's own (prefect_backfill.run_state)

        def is_failed(self) -> bool:
            return True

        def result(self) -> dict[str, Any]:
            raise AssertionError("a failed state's result is not read")

    timed_out = TimedOut({}, name="Failed", message="The flow was failed and never resumed.")
    monkeypatch.setattr(flows.backfill, "backfill", lambda **params: timed_out)
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # a server to answer in
        code = run_cli([*ARGS, "--canary", "1", "--canary-timeout", "60"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and len(err) == 1 and "no answer within 60 s" in err[0] and "--canary 1" in err[0]


@pytest.mark.parametrize(("flag", "value"), [("--chunk-mb", "inf"), ("--retry-delay", "inf"), ("--chunk-mb", "nan")])
def test_non_finite_floats_are_refused_before_anything_runs(
    flag: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--chunk-mb inf` used to pass, record PENDING claims and then fail with OverflowError."""
    import prefect_backfill.preparing as request

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("planned a request with a non-finite float")

    monkeypatch.setattr(request, "prepare", never)
    code = run_cli(["run", "cli_outcomes", "--start", "2024-01-01", "--end", "2024-01-02", flag, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "finite" in err or "not in the range" in err, err


# --- what the CLI acts on is typed: classes, lists, state data; never a message, a class name or a state name ---


def test_the_terminal_filter_reads_an_errors_type_not_its_words() -> None:
    import logging

    from prefect_backfill.cli.live import _CancelledJobFilter
    from prefect_backfill.errors import EngineCancelledError

    def record(error: BaseException) -> logging.LogRecord:
        return logging.LogRecord(
            "prefect.task_runs", logging.ERROR, __file__, 1, "failed", (), (type(error), error, None)
        )

    quiet = _CancelledJobFilter()
    assert quiet.filter(record(RuntimeError("Job 14 cancelled as part of cancellation of all jobs")))  # words alone
    assert not quiet.filter(record(EngineCancelledError("")))  # the type alone


def test_usage_errors_are_told_apart_by_the_classes_typer_actually_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """typer 0.29 raises its vendored click's classes (typer._click.exceptions), not the click package's:
    the CLI's classes include both, and a subclass under any name is handled as its base."""
    import click
    from typer._click import exceptions as vendored

    from prefect_backfill.cli.app import app
    from prefect_backfill.cli.entry import _exception_classes, _usage_message

    with pytest.raises(vendored.NoSuchOption) as raised:
        app(args=["run", "orders", "--bogus"], prog_name="backfill", standalone_mode=False)
    assert type(raised.value) in _exception_classes("NoSuchOption")
    assert not isinstance(raised.value, click.exceptions.NoSuchOption)  # why click's classes alone would miss it
    assert click.exceptions.NoSuchOption in _exception_classes("NoSuchOption")

    class Renamed(vendored.NoSuchOption):
        """Another name, the same meaning."""

    for cls in (vendored.NoSuchOption, click.exceptions.NoSuchOption, Renamed):
        error = cls("--max-concurent", possibilities=["--max-concurrency"])
        assert _usage_message(error, ["run"]).startswith("no such option --max-concurent: did you mean")
    missing = vendored.BadOptionUsage("--start", "Option '--start' is followed by nothing, in other words")
    assert _usage_message(missing, ["run", "p", "--start"]).startswith("--start: the value is missing")
    flag = vendored.BadOptionUsage("--yes", "Option '--yes' requires nothing; reworded")
    assert not _usage_message(flag, ["run", "p", "--yes=1"]).startswith("--yes: the value is missing")


def test_the_window_closed_line_comes_from_the_summary_not_the_flows_state(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever the flow names its state or says in its message, partitions not started exit 3 with the
    window's line (another flow version, another state name: the same outcome)."""
    for name, message in (("WindowClosed", "the night is over"), ("Completed", None), ("Renamed", "x")):
        state = FakeState(summary(completed=["2024-01-01"], not_started=["2024-01-02", "2024-01-03"]), name, message)
        monkeypatch.setattr(flows.backfill, "backfill", lambda state=state, **params: state)
        assert run_cli(ARGS) == 3
        line = f"window closed: 2 partitions remain; the next run resumes (or now: {RESUME})"
        assert line in capsys.readouterr().out.splitlines()


def test_a_server_set_failure_is_told_by_the_states_data_not_its_message() -> None:
    from prefect.states import Completed, Failed

    from prefect_backfill.errors import CanaryStoppedError
    from prefect_backfill.run_state import failed_by_server

    assert failed_by_server(Failed(message="The flow was paused and never resumed."))
    assert failed_by_server(Failed(message="reworded by a later Prefect"))
    assert not failed_by_server(Failed(message="never resumed", data=CanaryStoppedError("stopped at the gate")))
    assert not failed_by_server(Completed(message="never resumed"))


def test_the_gates_decision_is_typed() -> None:
    from prefect_backfill.canary import DecidedBy, Decision

    assert Decision(False, "timeout").by is DecidedBy.TIMEOUT  # type: ignore[arg-type]
    assert Decision(True, DecidedBy.TERMINAL) == Decision(True, "terminal")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Decision(False, "a timeout")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kinds", "code", "line"),
    [
        ({"2024-01-01": "complete", "2024-01-02": "complete", "2024-01-03": "excluded"}, 0, None),
        (
            {"2024-01-01": "complete", "2024-01-02": "held", "2024-01-03": "held"},
            4,
            f"2 partition(s) were left to another live run: rerun when it ends ({RESUME})",
        ),
    ],
)
def test_nothing_to_run_exits_with_the_plans_summary_and_starts_no_flow(
    pipeline: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kinds: dict[str, str],
    code: int,
    line: str | None,
) -> None:
    """Nothing to do costs nothing: no flow run (so no Prefect server, no Spark), the plan and the summary
    printed, and the exit code the flow would have given (4 while another live run holds some)."""
    from dataclasses import replace

    from prefect_backfill.partitions import parse_partition_key
    from prefect_backfill.planning import Skip
    from prefect_backfill.reasons import SkipKind, SkipReason

    real_prepare = prefect_backfill.preparing.prepare

    def nothing_due(request: BackfillRequest, settings: Any = None) -> PreparedRun:
        made = real_prepare(request, settings)
        skipped = tuple(Skip(parse_partition_key(k, pipeline.grain), SkipReason(SkipKind(v))) for k, v in kinds.items())
        return replace(made, plan=replace(made.plan, to_run=(), skipped=skipped, why={}))

    def no_flow(**params: Any) -> None:
        raise AssertionError("a run with nothing to do started a flow run")

    monkeypatch.setattr(prefect_backfill.preparing, "prepare", nothing_due)
    monkeypatch.setattr(flows.backfill, "backfill", no_flow)
    assert run_cli(ARGS) == code
    out = capsys.readouterr().out
    assert "0 to run" in out
    held = list(kinds.values()).count("held")
    assert f"cli_outcomes: 0 completed, 0 cached, {3 - held} skipped, 0 failed of 3" in out
    if line is not None:
        assert line in out.splitlines()
    assert "undo it with" not in out  # nothing was written: nothing to undo
