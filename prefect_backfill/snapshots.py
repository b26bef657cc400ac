"""What a Delta table holds, as values: its identity and its partitions' data files by key (the
content digest, bytes and rows of each), and how a log's values map to partition keys. Pure: read by
:mod:`prefect_backfill.tables` (delta-rs), compared by planning, drift and undo without loading it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import unquote

from prefect_backfill.partitions import Grain, Partition

__all__ = ["CONTENT_DIGEST", "DataChanges", "PartitionFiles", "TableSnapshot", "file_location", "partition_key"]

#: How a digest of a partition's rows (:mod:`prefect_backfill.engine.content`) begins; a digest of its files
#: never does, so the two kinds are never compared with each other.
CONTENT_DIGEST = "rows:"


@dataclass(frozen=True, slots=True)
class PartitionFiles:
    """One partition's data files: a digest of their identity, their bytes and rows (from the log), and
    where they are (``paths``: absolute paths or URIs, so an undo can check they still exist)."""

    digest: str
    size_bytes: int
    num_records: int | None
    paths: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DataChanges:
    """Which commits of a table changed data, by partition, read from its log for the commits
    ``after`` < version <= ``until``: ``latest[key]`` is the newest of them whose add or remove actions
    for partition ``key`` changed data (Delta's ``dataChange``). A compaction (OPTIMIZE, auto-compaction,
    a deletion-vector purge) rewrites files with ``dataChange: false``: it changes a partition's files,
    not its rows, so it is never in ``latest``."""

    after: int
    until: int
    latest: Mapping[str, int] = field(default_factory=dict)

    def unchanged_since(self, key: str, version: int | None) -> bool:
        """Whether no commit after ``version`` changed partition ``key``'s data; False when the log read
        does not reach back to ``version`` (an unknown version, or commit files cleaned up since)."""
        if version is None or version < self.after:
            return False
        return self.latest.get(key, self.after) <= version


@dataclass(frozen=True)
class TableSnapshot:
    """A table's identity and its partitions by key; ``known=False`` when the log could not be read
    (a catalog table whose storage delta-rs cannot open): then nothing can be concluded from it."""

    exists: bool
    table_id: str | None = None
    version: int | None = None
    partitions: Mapping[str, PartitionFiles] = field(default_factory=dict)
    known: bool = True
    location: str | None = None  # where delta-rs read the log (a catalog table's storage location)
    # Read only when a partition's files differ from what was recorded (see prefect_backfill.drift).
    changes: DataChanges | None = None
    shape: str | None = None  # the table's columns' names and types (schema_change.shape_digest)
    # Digests of the partitions' rows (read with Spark), not of their files: a clustered or unpartitioned
    # target, whose files mix partitions (prefect_backfill.engine.content).
    content: bool = False

    @classmethod
    def unknown(cls) -> TableSnapshot:
        return cls(exists=True, known=False)

    def digest(self, key: str) -> str | None:
        """The content digest of partition ``key`` ("" for a partition with no files), or None if unknown."""
        if not self.known:
            return None
        files = self.partitions.get(key)
        return files.digest if files is not None else ""

    def has(self, key: str) -> bool:
        return key in self.partitions


def partition_key(value: object, grain: Grain) -> str | None:
    """The partition key of a partition column value (a date or timestamp), None for anything else."""
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=None)
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        return None
    return Partition(moment, grain).key


def file_location(table_location: str, path: str) -> str:
    """Where the data file ``path`` of an add action (as the log holds it: URL-encoded, usually relative
    to the table) lives: an absolute local path or a URI."""
    decoded = unquote(path)
    if "://" in decoded or decoded.startswith("/"):
        return decoded
    return f"{table_location.rstrip('/')}/{decoded}"
