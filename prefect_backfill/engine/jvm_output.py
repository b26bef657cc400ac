"""Where the JVM's own output goes: a log file under the project's cache, not the user's terminal.

A Spark start prints some forty lines before the package says anything (Ivy's resolution report, the
hostname and native-library warnings, log4j's notices, the incubator-module warning) and Spark's WARN lines
keep coming during the run, in the terminal and in the Prefect logs. None of it is for the person running
a backfill unless something fails, so the JVM writes it to ``<cache_dir>/logs/spark-<time>-<pid>.log``
and the package prints that path when Spark does not start or a run ends with failures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

_KEEP = 30  # the newest logs kept per cache: enough to look back over a night's runs
_current: Path | None = None


def new_log(cache_dir: Path) -> Path:
    """A fresh log path for this process's JVM (the folder created, the oldest logs beyond the last
    thirty removed); it becomes :func:`current_log`."""
    global _current
    folder = (cache_dir / "logs").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    # Other processes prune the same folder as they start (two workers, two runs): a log listed here may
    # be gone before it is looked at, and that is no reason to fail a start.
    dated: list[tuple[float, Path]] = []
    for path in folder.glob("spark-*.log"):
        with contextlib.suppress(FileNotFoundError):
            dated.append((path.stat().st_mtime, path))
    old = [path for _, path in sorted(dated)]
    for path in old[: max(0, len(old) - _KEEP + 1)]:
        path.unlink(missing_ok=True)
    _current = folder / f"spark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return _current


def current_log() -> Path | None:
    """The log of this process's JVM, if it started one."""
    return _current


def first_error(path: Path, limit: int = 240) -> str | None:
    """The first line of ``path`` that names an error (an exception, Ivy's unresolved dependency), to put in
    a one-line message; when the JVM itself could not be created, the launcher's reason (the line before).
    None if there is none. Later lines are consequences (``Caused by`` chains end in the same place)."""
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return None
    markers = ("Exception", "Error", "unresolved dependency")
    for i, text in enumerate(lines):
        if text and not text.startswith("at ") and any(marker in text for marker in markers):
            if text.startswith("Error: Could not create the Java Virtual Machine") and i and lines[i - 1]:
                return f"{lines[i - 1]} ({text})"[:limit]
            return text[:limit]
    return None


def quiet_when_the_jvm_goes(spark: Any) -> None:
    """When the JVM goes (SIGTERM to the process group: a worker cancelling the run), pyspark's
    accumulator server prints a 20-line ``EOFError`` traceback from its own thread, above the one line
    that says what happened; the chunks already report a lost driver. To the debug log instead."""
    server = getattr(spark.sparkContext, "_accumulatorServer", None)
    if server is None:
        return

    def handle_error(request: object, client_address: object) -> None:
        logging.getLogger(__name__).debug("pyspark's accumulator server lost the JVM", exc_info=True)

    server.handle_error = handle_error
