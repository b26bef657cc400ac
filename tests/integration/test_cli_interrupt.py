"""Ctrl-C on a real ``backfill run`` (a real process, its own Prefect server and Spark): it stops, says how
far it got, exits 130 and prints a command that, run as printed, finishes the backfill."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status

pytestmark = pytest.mark.spark

ROOT = Path(__file__).resolve().parents[2]
BACKFILL = str(Path(sys.executable).parent / "backfill")
NAME = "ctrl_c_orders"
KEYS = [f"2024-01-0{d}" for d in range(1, 5)]


def _env(tmp_path: Path, modules: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return env | {
        "PYTHONPATH": f"{ROOT}{os.pathsep}{modules}",
        "BACKFILL_PIPELINE_MODULES": "ctrl_c_pipelines",
        "BACKFILL_DATA_DIR": str(tmp_path / "data"),
        "BACKFILL_RESULT_STORAGE_PATH": str(tmp_path / "results"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }


def _start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # a file, not a pipe: Spark's and Prefect's children may outlive the CLI
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Whatever is left of a process group this test started."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_ctrl_c_reports_progress_exits_130_and_the_printed_command_resumes(bronze: str, tmp_path: Path) -> None:
    modules = tmp_path / "modules"
    modules.mkdir()
    target = tmp_path / "silver" / "orders"
    (modules / "ctrl_c_pipelines.py").write_text(
        textwrap.dedent(
            f"""
            import time

            from prefect_backfill import Pipeline, register


            def slow_copy(orders):
                time.sleep(1.5)  # on the driver, once per partition: time to press Ctrl-C mid-run
                return orders


            register(Pipeline({NAME!r}, {bronze!r}, {str(target)!r}, "order_date", slow_copy, "1"))
            """
        )
    )
    env = _env(tmp_path, modules)
    ledger = Ledger(tmp_path / "silver" / "_backfill_progress")
    # One partition per job, one at a time: after the first COMPLETE, three remain (>= 4.5 s), ample time
    # to interrupt.
    args = ["run", NAME, "--start", KEYS[0], "--end", KEYS[-1], "--max-concurrency", "1", "--retries", "0"]
    args += ["--chunk-partitions", "1", "--chunk-mb", "256"]  # the default chunk_mb: not in the resume command

    first = _start([BACKFILL, *args], env, tmp_path / "first.log")
    try:
        deadline = time.monotonic() + 240
        while first.poll() is None and time.monotonic() < deadline:
            if any(s.status is Status.COMPLETE for s in ledger.current(NAME).values()):
                break
            time.sleep(0.3)
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        first.send_signal(signal.SIGINT)  # to the CLI process only, as the shell's Ctrl-C reaches Python
        code = first.wait(120)
    finally:
        _stop(first)
    out = (tmp_path / "first.log").read_text()
    assert code == 130, out
    [line] = [line for line in out.splitlines() if line.startswith("interrupted: ")]
    progress, command = line.split("; resume with: ")
    done = sum(1 for s in ledger.current(NAME).values() if s.status is Status.COMPLETE)
    assert 1 <= done < len(KEYS)
    assert progress == f"interrupted: {done} of {len(KEYS)} planned partitions complete, {len(KEYS) - done} left"
    assert command == (
        f"backfill run {NAME} --start 2024-01-01 --end 2024-01-04 --max-concurrency 1 --retries 0 --chunk-partitions 1"
    )
    assert "Traceback" not in out, out

    argv = shlex.split(command)
    second = _start([BACKFILL, *argv[1:]], env, tmp_path / "second.log")
    try:
        code = second.wait(240)
    finally:
        _stop(second)
    out = (tmp_path / "second.log").read_text()
    assert code == 0, out
    assert {key: s.status for key, s in ledger.current(NAME).items()} == dict.fromkeys(KEYS, Status.COMPLETE)
