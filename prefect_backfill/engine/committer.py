"""How a chunk's output becomes one commit: the write (:func:`write_chunk`), and, on a target whose
partitions Delta cannot tell apart, one commit at a time (:class:`Committer`).

On a table partitioned by the partition column, two chunks' ``replaceWhere`` commits touch disjoint
partitions and Delta's conflict check lets both through. On a table that is not partitioned (a
liquid-clustered one, or a plain one) it cannot: its check filters the files a winning commit added by
*partition* values only ("There is no reason to filter files if the table is not partitioned",
``ConflictChecker.scala``), so any concurrent add conflicts with a ``replaceWhere`` on a data column,
whatever the dates (``ConcurrentAppendException``; dbt-databricks #914, delta-io/delta #4470).

So the package computes chunks in parallel and commits them to such a table one at a time: the chunk's
output is cached by the pass that counts and checks it (outside the lock), and only the write, which
reads that cache, writes the files and commits, runs under the table's lock. Another *process* (a second
run, a daily job, a Dask worker) can still commit in between: a conflict then retries the commit from
the cache, never the compute, a bounded number of times.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from prefect_backfill.engine.commits import landed_version
from prefect_backfill.engine.failures import engine_error
from prefect_backfill.errors import CommitConflictError, RowsOutsidePartitionError
from prefect_backfill.pipeline import Pipeline

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["COMMIT_ATTEMPTS", "Committer", "write_chunk"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How many times one chunk's commit is tried against other processes' commits before its conflict is
#: the chunk's failure (then retried as a transient failure, compute and all, like any other).
COMMIT_ATTEMPTS = 6


class Committer:
    """One lock per table, for the process's lifetime: ``commit(table, write)`` runs ``write`` holding
    ``table``'s lock, again on a commit conflict (after a short random pause, so two processes retrying
    do not meet again at once). ``pause`` is the longest pause in seconds."""

    def __init__(self, attempts: int = COMMIT_ATTEMPTS, pause: float = 2.0) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._attempts = attempts
        self._pause = pause

    def _lock(self, table: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(table, threading.Lock())

    def commit(self, table: str, write: Callable[[], T]) -> T:
        """``write()``'s result; its error if it is not a commit conflict, or once ``attempts`` conflicted."""
        for attempt in range(1, self._attempts + 1):
            with self._lock(table):
                try:
                    return write()
                except Exception as exc:
                    if not isinstance(engine_error(exc), CommitConflictError) or attempt == self._attempts:
                        raise
                    logger.info(
                        "commit to %s conflicted with another writer's (attempt %d of %d): committing again "
                        "from the cached output",
                        table,
                        attempt,
                        self._attempts,
                    )
            time.sleep(random.uniform(self._pause / 4, self._pause))
        raise AssertionError("unreachable")  # pragma: no cover (the loop returns or raises)


def write_chunk(pipeline: Pipeline, output: DataFrame, predicate: str, commit_tag: str, span: str) -> None:
    """Replace the rows ``predicate`` selects (the chunk's partitions) with ``output`` in one commit
    tagged ``commit_tag`` (its userMetadata: how the commit is found again). Delta's replaceWhere
    constraint check stays on: an output row outside the predicate fails the write, nothing committed."""
    writer = (
        output.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", predicate)
        .option("userMetadata", commit_tag)
    )
    try:
        if pipeline.target.is_path:
            writer.save(pipeline.target.location)
        else:
            writer.saveAsTable(pipeline.target.location)
    except Exception as exc:
        error = engine_error(exc)
        if isinstance(error, RowsOutsidePartitionError):  # Delta's replaceWhere check refused the write
            raise RowsOutsidePartitionError(
                f"the transform wrote rows outside partition {pipeline.partition_column}={span}; nothing "
                "was committed: make the transform keep each row's partition value"
            ) from exc
        # The driver can die (or the call fail) after the commit landed: then the partitions ARE written,
        # and the ledger must say so. The commit's own evidence decides: our tag in the Delta log.
        landed = landed_version(pipeline, commit_tag)
        if landed is None:
            raise error from exc
        logger.warning(
            "the write of %s raised after its commit landed (version %d): recorded as written (%s)",
            span,
            landed,
            type(exc).__name__,
        )
