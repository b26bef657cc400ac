"""Restore target partitions to their content at earlier versions: Delta time travel + ``replaceWhere``.

Why not Delta's ``RESTORE``: it rolls back the *whole table*, discarding every other partition's later
commits (the daily pipeline's, other backfills'). Here each partition is read as it was at its own
version (``versionAsOf`` for a path, ``VERSION AS OF`` for a catalog table) and written back with
``replaceWhere`` over exactly those partitions, built by :func:`~prefect_backfill.engine.predicates.chunk_predicate`
(typed literals, never user strings), with Delta's constraint check on: a row outside them fails the
write. Every group of partitions (one per version) goes into ONE commit: the undo is all or nothing,
and readers see the table before it or after it, never half-undone. A partition that did not exist
at its version reads as no rows, so the overwrite removes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import TYPE_CHECKING

from prefect_backfill.partitions import Partition
from prefect_backfill.pipeline import Pipeline, TableRef

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["read_at", "restore_partitions"]


def read_at(spark: SparkSession, table: TableRef, version: int) -> DataFrame:
    """The table as of ``version`` (Delta time travel)."""
    from prefect_backfill.engine.predicates import quote_name

    if table.is_path:
        return spark.read.format("delta").option("versionAsOf", int(version)).load(table.location)
    return spark.sql(f"SELECT * FROM {quote_name(table.location)} VERSION AS OF {int(version)}")


def restore_partitions(
    spark: SparkSession, pipeline: Pipeline, versions: Mapping[Partition, int], commit_tag: str
) -> None:
    """Overwrite each partition of ``versions`` with its rows at its version, in one commit."""
    from prefect_backfill.engine.predicates import chunk_condition, chunk_predicate

    if not versions:
        return
    column = pipeline.partition_column
    groups: dict[int, list[Partition]] = {}
    for partition, version in versions.items():
        groups.setdefault(version, []).append(partition)
    frames = [read_at(spark, pipeline.target, v).where(chunk_condition(column, parts)) for v, parts in groups.items()]
    data = reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)
    writer = (
        data.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", chunk_predicate(column, sorted(versions)))
        .option("userMetadata", commit_tag)
    )
    if pipeline.target.is_path:
        writer.save(pipeline.target.location)
    else:
        writer.saveAsTable(pipeline.target.location)
