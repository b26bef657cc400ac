"""Stop on a signal the way a closed night window stops a run: take no new chunk, cancel the Spark work
in flight (nothing of it is committed), put its partitions back to PENDING, end with what was done.

Ctrl-C in a terminal sends SIGINT to the whole foreground process group; a Prefect worker cancelling a
flow run sends SIGTERM to the flow run's process group (then SIGKILL after its grace period, 30 s by
default). Both reach the run's main thread here. The first signal requests a stop; the run then ends
within :data:`STOP_GRACE_S` seconds, on its own or forced; a second signal forces it at once. Forcing
exits the process without waiting for chunks in flight: a Delta commit is atomic, so nothing is ever
half-written, and a partition whose commit did not happen stays RUNNING under this run's lease, which
dies with the process (the next run takes it over).

Why not ``KeyboardInterrupt``: raised in the main thread, it unwinds the flow while the chunks' threads
go on (and commit), and the interpreter then waits for them at exit. A stop request is a flag the
orchestrator and the chunks read; only a blocking prompt or wait (the canary gate, waiting for another
run's partitions) is interrupted by an exception, inside :func:`interruptible`.

The stop request is the process's: one run per process (the CLI, a worker's flow run process). Flows run
side by side in threads of one process (tests do this) share the first one's request.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

__all__ = [
    "STOP_GRACE_S",
    "Interrupted",
    "StopRequest",
    "interruptible",
    "pause",
    "request_stop",
    "requested",
    "set_last_words",
    "stop_on_signals",
]

#: Seconds from the first signal to the end of the process at the latest (a worker kills after 30 s).
STOP_GRACE_S = 20.0

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopRequest:
    """What asked the run to stop (a signal, or Prefect ending the flow run), and when."""

    cause: str  # SIGINT, SIGTERM, or the flow run's state on the server (Crashed, Cancelled…)
    exit_code: int  # what the CLI exits with: 128 + the signal's number; 1 for a server-side end
    at: datetime
    said: str  # how messages name it: "Ctrl-C", "SIGTERM", "the flow run was marked Crashed"

    @classmethod
    def from_signal(cls, signum: int) -> StopRequest:
        name = signal.Signals(signum).name
        return cls(name, 128 + signum, datetime.now(UTC), "Ctrl-C" if signum == signal.SIGINT else name)

    @property
    def name(self) -> str:
        """How the summary records the cause (``SIGINT``, ``SIGTERM``, ``Crashed``)."""
        return self.cause


class Interrupted(BaseException):
    """Raised in the main thread by a stop signal inside :func:`interruptible` (a prompt, a wait), so
    that it returns; a BaseException so that no ``except Exception`` on the way swallows it."""


class _Switch:
    """The process's stop request, set by the signal handler, read by every thread of the run."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.request: StopRequest | None = None
        self.interruptible = 0
        self.ended = threading.Event()
        self.handler: Callable[[int, FrameType | None], None] = signal.default_int_handler
        self.on_stop: Callable[[StopRequest], None] = lambda _: None
        self.grace_s = STOP_GRACE_S
        self.lock = threading.Lock()


_switch: _Switch | None = None
_last_words: Callable[[StopRequest], None] | None = None


def requested() -> StopRequest | None:
    """The stop request of the run in this process, if a signal asked for one."""
    switch = _switch
    return switch.request if switch is not None else None


def pause(seconds: float) -> None:
    """``time.sleep`` that a stop request cuts short (retry backoff, waits between polls)."""
    switch = _switch
    if switch is None:
        threading.Event().wait(seconds)
    else:
        switch.event.wait(seconds)


def set_last_words(say: Callable[[StopRequest], None] | None) -> None:
    """What to print just before a forced exit (the CLI: how far the run got and how to resume)."""
    global _last_words
    _last_words = say


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Inside, a stop signal also raises :class:`Interrupted` in the main thread (a prompt or a poll
    that would otherwise block until its own timeout); the caller catches it and returns."""
    switch = _switch
    if switch is None:
        yield
        return
    if switch.request is not None:
        raise Interrupted
    switch.interruptible += 1
    try:
        yield
    finally:
        switch.interruptible -= 1


@contextlib.contextmanager
def stop_on_signals(on_stop: Callable[[StopRequest], None], grace_s: float = STOP_GRACE_S) -> Iterator[None]:
    """While inside, SIGINT and SIGTERM request a stop instead of killing or raising.

    ``on_stop`` runs once, in its own thread, on the first signal (cancel the Spark work in flight).
    Only the main thread can take signals: anywhere else (a flow run in a worker thread) this installs
    no handler and the signals keep their old meaning, but :func:`request_stop` still works. Nested, the
    outermost scope keeps them: the CLI takes them around the whole flow run (Prefect's own start and end
    included), the flow inside it."""
    global _switch
    main = threading.current_thread() is threading.main_thread()
    if _switch is not None:  # an outer scope (the CLI around the flow) owns the signals: take them back
        with _handled_by(_switch.handler) if main else contextlib.nullcontext():  # from Prefect's engine
            yield
        return
    switch = _Switch()

    def handle(signum: int, frame: FrameType | None) -> None:
        if switch.request is not None:  # the second signal: at once
            _force(StopRequest.from_signal(signum), "a second signal")
        _request(switch, StopRequest.from_signal(signum))
        if switch.interruptible:
            raise Interrupted

    switch.handler = handle
    switch.on_stop, switch.grace_s = on_stop, grace_s
    _switch = switch
    try:
        with _handled_by(handle) if main else contextlib.nullcontext():  # off the main thread: request_stop only
            yield
    finally:
        switch.ended.set()
        _switch = None


@contextlib.contextmanager
def _handled_by(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to ``handler`` inside; what was there before comes back after."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def request_stop(cause: str, said: str, exit_code: int = 1) -> bool:
    """Stop the run in this process as a signal would (from any thread): Prefect says the flow run is
    over (Crashed by the zombie automation, cancelled in the UI), so writing on would be a run nobody
    sees. False if no run is in progress here or a stop was requested already."""
    switch = _switch
    if switch is None or switch.request is not None:
        return False
    return _request(switch, StopRequest(cause, exit_code, datetime.now(UTC), said))


def _request(switch: _Switch, request: StopRequest) -> bool:
    with switch.lock:
        if switch.request is not None:
            return False
        switch.request = request
    switch.event.set()
    _log.warning("%s: stopping (no new chunks; running Spark jobs cancelled)", request.said)
    threading.Thread(target=_quietly, args=(switch.on_stop, request), name="backfill-stop", daemon=True).start()
    grace = threading.Thread(target=_deadline, args=(switch, request, switch.grace_s), name="stop-grace", daemon=True)
    grace.start()
    return True


def _quietly(on_stop: Callable[[StopRequest], None], request: StopRequest) -> None:
    try:
        on_stop(request)
    except Exception as exc:  # the JVM may be gone already (SIGTERM to the group reaches it too)
        _log.debug("cancelling on %s failed: %s", request.said, exc)


def _deadline(switch: _Switch, request: StopRequest, grace_s: float) -> None:
    if not switch.ended.wait(grace_s):
        _force(request, f"still stopping after {grace_s:g} s")


def _force(request: StopRequest, why: str) -> None:
    """Exit now with the signal's code. Nothing half-committed: Delta commits are atomic."""
    _log.warning("%s: exiting now; partitions in flight stay RUNNING until this run's lease expires", why)
    say = _last_words
    if say is not None:
        with contextlib.suppress(BaseException):
            say(request)
    with contextlib.suppress(BaseException):
        logging.shutdown()
    os._exit(request.exit_code)
