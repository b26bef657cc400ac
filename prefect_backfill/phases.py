"""Where a command's own time goes, when asked: with ``BACKFILL_PHASES_FILE`` set, each step of a
``backfill`` process appends one JSON line to that file as it begins and as it ends (the step, the wall
clock, the thread).

Why a file of marks and not a profiler: the steps of ``backfill run`` overlap on purpose (Spark and the
target start while Prefect's embedded server starts), and what a user waits for is their union from
``exec`` to exit; a profiler of one thread shows neither. ``bench/fixed_cost.py`` sets the variable, notes
when it started the process and when the process ended, and turns the marks into the breakdown of
docs/fixed-cost-benchmarks.md. Unset (every user's run) a mark costs one environment lookup and writes
nothing; a mark that cannot be written is dropped (it is a measurement, never a reason to fail a run).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator

__all__ = ["ENV", "mark", "phase"]

#: The file the marks go to; read at every mark (never fixed at import: tests and benches set it late).
ENV = "BACKFILL_PHASES_FILE"
_lock = threading.Lock()


def mark(step: str) -> None:
    """Record that ``step`` happens now (a point, or a phase's ``:start`` / ``:end``)."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"step": step, "t": time.time(), "thread": threading.current_thread().name, "pid": os.getpid()})
    with _lock, contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


@contextlib.contextmanager
def phase(step: str) -> Iterator[None]:
    """Mark ``step:start`` on entry and ``step:end`` on exit, however it exits."""
    mark(f"{step}:start")
    try:
        yield
    finally:
        mark(f"{step}:end")
