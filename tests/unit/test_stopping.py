"""The stop request (prefect_backfill.stopping), with real signals sent to this process (or to a child,
where the stop must end the process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from prefect_backfill import stopping

ROOT = Path(__file__).resolve().parents[2]


def _wait_for(what: threading.Event, seconds: float = 5.0) -> None:
    assert what.wait(seconds)


def test_a_signal_requests_a_stop_instead_of_raising_and_runs_on_stop_once() -> None:
    called = threading.Event()
    seen: list[stopping.StopRequest] = []

    def on_stop(request: stopping.StopRequest) -> None:
        seen.append(request)
        called.set()

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stopping.stop_on_signals(on_stop, grace_s=60):
        assert stopping.requested() is None
        os.kill(os.getpid(), signal.SIGTERM)  # no KeyboardInterrupt, no death: a flag
        time.sleep(0.1)
        request = stopping.requested()
        assert request is not None and request.name == "SIGTERM" and request.exit_code == 143
        _wait_for(called)
        begun = time.monotonic()
        stopping.pause(30)  # a retry's backoff: cut short
        assert time.monotonic() - begun < 1
    assert [r.cause for r in seen] == ["SIGTERM"]
    assert stopping.requested() is None  # the scope ended: the next run in this process starts clean
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_signal_interrupts_a_prompt_or_a_wait_inside_interruptible() -> None:
    with stopping.stop_on_signals(lambda _: None, grace_s=60):
        threading.Timer(0.2, os.kill, args=(os.getpid(), signal.SIGINT)).start()
        with pytest.raises(stopping.Interrupted), stopping.interruptible():
            time.sleep(10)
        request = stopping.requested()
        assert request is not None and request.said == "Ctrl-C" and request.exit_code == 130
        with pytest.raises(stopping.Interrupted), stopping.interruptible():  # already stopped: at once
            pass


def test_an_inner_scope_takes_the_signals_back_from_whoever_took_them() -> None:
    """The CLI owns the signals around the flow; Prefect's engine installs its own SIGTERM handler in
    between; the flow's own scope takes it back, and gives it back when it ends."""

    def prefects(signum: int, frame: object) -> None:
        raise AssertionError("Prefect's handler ran")

    with stopping.stop_on_signals(lambda _: None, grace_s=60):
        ours = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, prefects)
        with stopping.stop_on_signals(lambda _: None, grace_s=60):
            assert signal.getsignal(signal.SIGTERM) is ours
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)
            assert stopping.requested() is not None
        assert signal.getsignal(signal.SIGTERM) is prefects
        signal.signal(signal.SIGTERM, ours)


def _child(body: str) -> subprocess.Popen[str]:
    code = textwrap.dedent(
        """
        import os, signal, sys, time
        from prefect_backfill import stopping
        stopping.set_last_words(lambda r: print("last words:", r.name, flush=True))
        """
    ) + textwrap.dedent(body)
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(  # its own group, signalled as a terminal or a worker does: the whole group
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def test_a_second_signal_exits_at_once_with_the_signals_code_and_last_words() -> None:
    child = _child(
        """
        with stopping.stop_on_signals(lambda r: print("stopping", flush=True), grace_s=60):
            print("ready", flush=True)
            time.sleep(60)  # a run that does not stop by itself
        """
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    os.killpg(child.pid, signal.SIGINT)
    # The second signal only once the first was taken: two signals before Python's handler runs are one.
    assert child.stdout.readline().strip() == "stopping"
    os.killpg(child.pid, signal.SIGINT)
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 130
    assert "last words: SIGINT" in out


def test_a_stop_that_takes_longer_than_its_grace_is_forced() -> None:
    child = _child(
        """
        with stopping.stop_on_signals(lambda r: None, grace_s=0.5):
            print("ready", flush=True)
            time.sleep(60)
        """
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    begun = time.monotonic()
    os.killpg(child.pid, signal.SIGTERM)
    out, _ = child.communicate(timeout=10)
    assert child.returncode == 143 and "last words: SIGTERM" in out
    assert time.monotonic() - begun < 8


def test_a_stop_can_be_requested_from_another_thread_off_the_main_thread_too() -> None:
    """Prefect ending the flow run (Crashed, Cancelled) stops the run as a signal would, from the
    watcher's thread; a flow run in a worker thread (no signal handlers there) still gets it."""
    results: list[object] = []

    def flow_in_a_thread() -> None:
        with stopping.stop_on_signals(lambda _: None, grace_s=60):
            assert stopping.requested() is None
            assert stopping.request_stop("Crashed", "the flow run was marked Crashed on the Prefect server")
            assert not stopping.request_stop("Cancelled", "again")  # the first cause stands
            results.append(stopping.requested())

    thread = threading.Thread(target=flow_in_a_thread)
    thread.start()
    thread.join(10)
    [request] = results
    assert isinstance(request, stopping.StopRequest)
    assert (request.cause, request.exit_code) == ("Crashed", 1)
    assert not stopping.request_stop("Crashed", "no run here")  # outside a run: nothing to stop
