"""What one chunk's Spark work is scoped by: the ``replaceWhere`` predicate and the matching read filter
over exactly its partitions, quoted catalog names, and the names and tags its jobs carry.

Kept apart from :mod:`prefect_backfill.engine.delta` (the engine) so that the restore and the engine both
build the same predicate from one place without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from prefect_backfill.chunking import split_stretches
from prefect_backfill.partitions import Grain, Partition

if TYPE_CHECKING:
    from pyspark.sql import Column

__all__ = ["chunk_condition", "chunk_predicate", "chunk_span", "job_properties", "job_tag", "quote_name"]


def _literal(partition: Partition) -> str:
    value = partition.value
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S}'"
    assert isinstance(value, date)
    return f"DATE '{value.isoformat()}'"


def _consecutive(parts: Sequence[Partition]) -> bool:
    return len(split_stretches(parts)) == 1


def chunk_predicate(column: str, partitions: Sequence[Partition]) -> str:
    """The ``replaceWhere`` of a chunk: exactly its partitions, as a typed range when they are
    consecutive hours or days, else an IN list (months: a range would also cover mid-month values).

    ``replaceWhere`` takes SQL text: it is built only from a validated identifier and typed literals
    formatted from date/datetime objects, never from user strings."""
    parts = sorted(partitions)
    if len(parts) == 1:
        return f"`{column}` = {_literal(parts[0])}"
    if parts[0].grain is not Grain.MONTH and _consecutive(parts):
        return f"`{column}` >= {_literal(parts[0])} AND `{column}` <= {_literal(parts[-1])}"
    return f"`{column}` IN ({', '.join(_literal(p) for p in parts)})"


def chunk_condition(column: str, partitions: Sequence[Partition]) -> Column:
    """The same condition as :func:`chunk_predicate`, as a Column for reading the source (typed values,
    so partition pruning applies)."""
    from pyspark.sql import functions as F

    parts = sorted(partitions)
    col = F.col(column)
    if len(parts) == 1:
        return col == F.lit(parts[0].value)
    if parts[0].grain is not Grain.MONTH and _consecutive(parts):
        return (col >= F.lit(parts[0].value)) & (col <= F.lit(parts[-1].value))
    return col.isin([p.value for p in parts])


def chunk_span(keys: Sequence[str]) -> str:
    """``2024-01-01..2024-01-30`` (or one key): how a chunk is named in the UI, the ledger and Spark."""
    return keys[0] if len(keys) == 1 else f"{keys[0]}..{keys[-1]}"


def job_tag(pipeline: str, span: str | None = None) -> str:
    """The tag of one chunk's Spark work, or (``span`` None) of all the pipeline's work in this process
    (see :meth:`SparkDeltaEngine.cancel`); every chunk's jobs carry both.
    Spark forbids commas in tags; pipeline names and partition keys have none, but be sure."""
    return (f"backfill:{pipeline}" if span is None else f"backfill:{pipeline}:{span}").replace(",", "_")


def job_properties(pipeline: str, span: str, pool: str) -> dict[str, str]:
    """Local properties of one chunk's jobs on classic Spark: a description naming its partitions
    (Spark UI, history server) and the FAIR pool (``settings.spark_pool``)."""
    return {"spark.job.description": f"backfill {pipeline} {span}", "spark.scheduler.pool": pool}


def quote_name(location: str) -> str:
    """A catalog name (each part already checked as a plain identifier by TableRef) in backquotes."""
    return ".".join(f"`{part}`" for part in location.split("."))
