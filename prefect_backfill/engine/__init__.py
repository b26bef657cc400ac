"""The engine: everything that touches data, behind one narrow interface.

Flows and tasks call only :class:`Engine`; the Spark + Delta implementation lives in
:mod:`prefect_backfill.engine.delta`, and ``BACKFILL_ENGINE`` swaps in another one (see :func:`get_engine`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prefect_backfill.errors import ConfigurationError
from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.settings import get_settings
from prefect_backfill.snapshots import TableSnapshot

__all__ = ["ChunkOutcome", "Engine", "TableInfo", "get_engine"]


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the engine knows about a table without reading its data."""

    exists: bool
    table_id: str | None = None
    partition_columns: tuple[str, ...] = ()
    schema: str | None = None  # the table's schema, as the JSON of its log's schemaString
    location: str | None = None  # where its Delta log is (a catalog table's storage, as its catalog says)

    def mixes_partitions(self) -> bool:
        """Not partitioned at all (liquid-clustered or plain): a file can hold rows of many partitions, so
        a partition's digest is of its rows (:mod:`prefect_backfill.engine.content`), not of its files."""
        return self.exists and not self.partition_columns


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What one chunk overwrite did: the Delta version it committed, rows in/out per partition, per
    partition its before/after diff (JSON, :class:`prefect_backfill.diff.PartitionDiff`) when made, and the
    digest of each partition's target files as of that commit (absent: unknown; ``backfill audit``
    compares it with the table later to see another writer's changes)."""

    table_version: int | None
    rows: Mapping[str, tuple[int, int]]
    diffs: Mapping[str, str] = field(default_factory=dict)
    rows_before: Mapping[str, int] = field(default_factory=dict)
    target_digests: Mapping[str, str] = field(default_factory=dict)
    shape: str | None = None  # the written columns' names and types (schema_change.shape_text)


class Engine(Protocol):
    def describe(self, table: TableRef) -> TableInfo:
        """Existence, identity and partitioning of a table (cheap: no data read)."""
        ...

    def snapshot(self, table: TableRef, column: str, grain: Grain, version: int | None = None) -> TableSnapshot:
        """The table's partitions (by key of ``grain``) with their files' digest, bytes and rows, read
        from its log (cheap: no data read), as of ``version`` (default: the latest);
        ``TableSnapshot.unknown()`` where the log cannot be read."""
        ...

    def content_snapshot(
        self, table: TableRef, column: str, grain: Grain, version: int | None = None, keys: Sequence[Partition] = ()
    ) -> TableSnapshot:
        """The table's partitions ``keys`` (all when empty) by a digest of their rows
        (:mod:`prefect_backfill.engine.content`), as of ``version``: reads the data (one job), for targets
        whose files mix partitions, where the log cannot tell one partition's changes from another's."""
        ...

    def ensure_target(self, pipeline: Pipeline) -> TableInfo:
        """Check the source exists and the target can be overwritten partition by partition;
        create the (empty, partitioned) target on first use. Raises a one-line BackfillError."""
        ...

    def process_chunk(
        self,
        pipeline: Pipeline,
        partitions: Sequence[Partition],
        commit_tag: str,
        rows_in: Mapping[str, int] | None = None,
        source_bytes: int | None = None,
    ) -> ChunkOutcome:
        """Read only ``partitions`` of the source, transform them, and atomically replace exactly those
        partitions of the target in one commit. All or nothing: on any error the target is untouched.
        A failed check raises PartitionValidationError naming its partitions where it can. ``rows_in``:
        the source rows per partition as the plan read them from the log (saves reading it again);
        ``source_bytes``: the chunk's source bytes, likewise (None: unknown)."""
        ...

    def cancel(self, pipeline: Pipeline, partitions: Sequence[Partition] | None = None) -> None:
        """Stop the work of a chunk in flight (from another thread); nothing of it is committed.
        ``partitions`` None: all of ``pipeline``'s work in this process (a stop signal)."""
        ...

    def restore(self, pipeline: Pipeline, versions: Mapping[Partition, int], commit_tag: str) -> int | None:
        """Put each target partition back to its content at its version (time travel), all of them in one
        Delta commit tagged ``commit_tag``; a partition that did not exist at its version is removed.
        Returns the version committed (None where it cannot be found cheaply: catalog tables)."""
        ...


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def get_engine() -> Engine:
    """The process's engine, chosen by ``BACKFILL_ENGINE`` and created once per process.

    ``spark`` (default) is Spark + Delta; its session starts on first use. Anything else is
    ``package.module:factory``, a callable returning an :class:`Engine` (the benchmarks' no-op engine
    measures orchestration alone this way), so no flow or task code changes with the engine.
    """
    name = get_settings().engine
    engine = _engines.get(name)
    if engine is not None:
        return engine
    with _engines_lock:
        if name not in _engines:
            _engines[name] = _load(name)
        return _engines[name]


def _load(name: str) -> Engine:
    if name == "spark":
        from prefect_backfill.engine.delta import SparkDeltaEngine

        return SparkDeltaEngine()
    module_name, _, attr = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"BACKFILL_ENGINE={name!r} cannot be loaded ({exc}): use 'spark' or 'package.module:factory'"
        ) from None
    engine: Engine = factory()
    return engine
