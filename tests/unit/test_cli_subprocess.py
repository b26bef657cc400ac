"""The installed ``backfill`` command as a user runs it (a real process, stdin closed): every usage error
is exactly one line, ``error: …`` saying what is wrong and where the help is, and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BACKFILL = str(Path(sys.executable).parent / "backfill")


def backfill(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, list[str]]:
    """Run the CLI; returns its exit code and its non-empty output lines (stdout and stderr)."""
    done = subprocess.run(
        [BACKFILL, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", **(env or {})},
    )
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, lines


RANGE = ("run", "demo_orders", "--start", "2024-01-01", "--end", "2024-01-02")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            (*RANGE, "--max-concurrency", "0"),
            "error: --max-concurrency: 0 is not in the range x>=1 (see backfill run --help)",
        ),
        ((*RANGE, "--retries", "-1"), "error: --retries: -1 is not in the range 0<=x<=20 (see backfill run --help)"),
        (
            (*RANGE, "--chunk-partitions", "0"),
            "error: --chunk-partitions: 0 is not in the range 1<=x<=10000 (see backfill run --help)",
        ),
        (
            (*RANGE, "--retry-delay", "-1"),
            "error: --retry-delay: -1 is not in the range x>=0 (see backfill run --help)",
        ),
        (
            (*RANGE, "--chunk-partitions", "two"),
            "error: --chunk-partitions: 'two': input should be a valid integer, unable to parse string as an integer "
            "(see backfill run --help)",
        ),
        ((*RANGE, "--bogus"), "error: no such option --bogus (see backfill run --help)"),
        (
            (*RANGE, "--max-concurent", "3"),
            "error: no such option --max-concurent: did you mean --max-concurrency? (see backfill run --help)",
        ),
        (
            (*RANGE, "--verbose"),
            "error: no such option --verbose (global options go before the command: backfill --verbose run …) "
            "(see backfill run --help)",
        ),
        (
            (),
            "error: missing command: use one of pipelines, plan, run, status, undo, diff, audit, setup, "
            "spark-connect, demo (see backfill --help)",
        ),
        (("run",), "error: missing argument PIPELINE (see backfill run --help)"),
        (("status",), "error: missing argument PIPELINE (see backfill status --help)"),
        (("run", "demo_orders", "--start"), "error: --start: the value is missing (see backfill run --help)"),
        (
            ("run", "demo_orders", "--start", "2024-01-01", "--end"),
            "error: --end: the value is missing (see backfill run --help)",
        ),
        (
            ("nope",),
            "error: no such command 'nope': use one of pipelines, plan, run, status, undo, diff, audit, setup, "
            "spark-connect, demo (see backfill --help)",
        ),
        (("rn", "demo_orders"), "error: no such command 'rn'. Did you mean 'run'? (see backfill --help)"),
        ((*RANGE, "extra"), "error: got unexpected extra argument(s) (extra) (see backfill run --help)"),
        (
            ("spark-connect", "--port", "0"),
            "error: --port: 0 is not in the range 1<=x<=65535 (see backfill spark-connect --help)",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: tuple[str, ...], line: str) -> None:
    code, lines = backfill(*args)
    assert (code, lines) == (2, [line])


def test_help_still_works() -> None:
    code, lines = backfill("--help")
    assert code == 0 and any("Usage: backfill [OPTIONS] COMMAND [ARGS]..." in line for line in lines)
    code, lines = backfill("run", "--help")
    assert code == 0 and any("--retry-delay" in line for line in lines) and any("Exit codes:" in line for line in lines)


def test_bad_requests_are_one_line_and_exit_2(tmp_path: Path) -> None:
    env = {"BACKFILL_DATA_DIR": str(tmp_path / "data")}
    for args, line in [
        (
            ("run", "demo_orders", "--start", "2024-01-01T05", "--end", "2024-01-02"),
            "error: start '2024-01-01T05' is an hour, but this pipeline's partitions are days: write 2024-01-01",
        ),
        (
            ("plan", "demo_orders", "--partitions", "2024-01-01T00:00Z"),
            "error: partition '2024-01-01T00:00Z' has a time-zone offset: partition keys are UTC calendar values: "
            "write it like 2024-01-01",
        ),
        (
            ("run", "demo_ordrs", "--start", "2024-01-01", "--end", "2024-01-02"),
            "error: unknown pipeline 'demo_ordrs': did you mean 'demo_orders'?",
        ),
    ]:
        assert backfill(*args, env=env) == (2, [line])
    code, lines = backfill(*RANGE, "--window-end", "2020-01-01T06:00", env=env)
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("error: window_end '2020-01-01T06:00' has already passed (now ")
    assert not (tmp_path / "data").exists()  # nothing written


def test_a_pipeline_module_with_a_syntax_error_is_one_line_naming_it(tmp_path: Path) -> None:
    (tmp_path / "acme_broken_pipelines.py").write_text(
        "from prefect_backfill import Pipeline, register\n\nregister(Pipeline('acme', 'a/b', 'c/d', 'dt', None, '1'\n"
    )
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "BACKFILL_PIPELINE_MODULES": "acme_broken_pipelines"}
    expected = (
        "error: cannot import pipeline module 'acme_broken_pipelines' (SyntaxError: '(' was never closed "
        "(acme_broken_pipelines.py, line 3)): fix it or BACKFILL_PIPELINE_MODULES"
    )
    assert backfill("pipelines", env=env) == (2, [expected])
    assert backfill("run", "acme", "--start", "2024-01-01", "--end", "2024-01-02", env=env) == (2, [expected])
    code, lines = backfill("--verbose", "pipelines", env=env)
    assert code == 2 and lines[-1] == expected
    assert "Traceback (most recent call last):" in lines and any("SyntaxError" in line for line in lines[:-1])


def test_bad_settings_and_an_empty_registry_are_one_line_and_exit_2(tmp_path: Path) -> None:
    assert backfill("pipelines", env={"BACKFILL_PIPELINE_MODULES": " , "}) == (
        2,
        [
            "error: BACKFILL_PIPELINE_MODULES (or pipeline_modules under [tool.prefect-backfill]): ' , ' names no "
            "module: give comma-separated module names, e.g. my.pipelines"
        ],
    )
    assert backfill("pipelines", env={"BACKFILL_WINDOW_GRACE": "soon"}) == (
        2,
        [
            "error: BACKFILL_WINDOW_GRACE (or window_grace under [tool.prefect-backfill]): Input should be a valid "
            "number, unable to parse string as a number"
        ],
    )
    # Outside the project (no pyproject.toml naming the demo) and no setting: nothing is registered.
    done = subprocess.run(
        [BACKFILL, "pipelines"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "BACKFILL_PIPELINE_MODULES"} | {"COLUMNS": "80"},
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("error: no pipelines are registered: set BACKFILL_PIPELINE_MODULES=your.module")


def test_json_commands_print_their_errors_as_json() -> None:
    import json

    code, lines = backfill("status", "demo_orders", "--start", "2024-13-01", "--json")
    assert code == 2 and len(lines) == 2 and lines[1].startswith("error: partition '2024-13-01'")  # stderr too
    assert json.loads(lines[0]) == {
        "error": "partition '2024-13-01' is not a valid date: no such day in the calendar",
        "kind": "InvalidRequestError",
        "exit_code": 2,
    }
    code, lines = backfill("plan", "nope", "--start", "2024-01-01", "--end", "2024-01-02", "--json")
    assert code == 2 and json.loads(lines[0])["kind"] == "UnknownPipelineError"
    code, lines = backfill("status", "--json")
    assert code == 2 and json.loads(lines[0]) == {
        "error": "missing argument PIPELINE (see backfill status --help)",
        "kind": "UsageError",
        "exit_code": 2,
    }
