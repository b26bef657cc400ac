"""The engine: everything that touches data, behind one narrow interface.

Flows and tasks call only :class:`Engine`; the Spark + Delta implementation lives in
:mod:`prefect_backfill.engine.delta`, and tests of orchestration logic can swap in a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from prefect_backfill.partitions import Partition
from prefect_backfill.pipeline import Pipeline, TableRef

__all__ = ["Engine", "PartitionOutcome", "TableInfo", "get_engine"]


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the engine knows about a table without reading its data."""

    exists: bool
    table_id: str | None = None
    partition_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PartitionOutcome:
    """What one partition overwrite did."""

    rows_in: int
    rows_out: int
    table_version: int | None


class Engine(Protocol):
    def describe(self, table: TableRef) -> TableInfo:
        """Existence, identity and partitioning of a table (cheap: no data read)."""
        ...

    def ensure_target(self, pipeline: Pipeline) -> TableInfo:
        """Check the source exists and the target can be overwritten partition by partition;
        create the (empty, partitioned) target on first use. Raises a one-line BackfillError."""
        ...

    def process_partition(self, pipeline: Pipeline, partition: Partition, commit_tag: str) -> PartitionOutcome:
        """Read only ``partition`` of the source, transform it, and atomically replace only that
        partition of the target. All or nothing: on any error the target is untouched."""
        ...


def get_engine() -> Engine:
    """The process's engine (Spark + Delta), created lazily; the Spark session starts on first use."""
    from prefect_backfill.engine.delta import SparkDeltaEngine

    return SparkDeltaEngine.instance()
