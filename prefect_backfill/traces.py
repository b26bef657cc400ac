"""Full error traces, kept out of the way: the ledger, the summary and ``status`` carry one line (the root
cause, :mod:`prefect_backfill.engine.failures`); the whole trace of every failed attempt (Python and, for
Spark, the Java stack py4j carries, often thousands of lines) goes to one file per run, whose path the
failure message names. The file is on the machine that ran the chunk (a Dask worker's own disk)."""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from prefect_backfill.settings import get_settings

__all__ = ["record_trace", "trace_path"]

logger = logging.getLogger(__name__)
_lock = threading.Lock()


def trace_path(run_id: str) -> Path:
    """Where the traces of run ``run_id`` go: ``<cache_dir>/traces/<run_id>.log``."""
    return (get_settings().cache_dir / "traces" / f"{run_id}.log").resolve()


def record_trace(run_id: str, partitions: Sequence[str], exc: BaseException) -> Path | None:
    """Append ``exc``'s whole trace for ``partitions``; the path, or None if it could not be written
    (a trace is a convenience: never let it fail the run)."""
    path = trace_path(run_id)
    span = partitions[0] if len(partitions) == 1 else f"{partitions[0]}..{partitions[-1]}"
    text = "".join(traceback.format_exception(exc))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lock, path.open("a", encoding="utf-8") as out:
            out.write(f"===== {datetime.now(UTC).isoformat()} partitions {span} =====\n{text}\n")
    except OSError as err:
        logger.warning("could not write the error trace to %s: %s", path, err)
        return None
    return path
