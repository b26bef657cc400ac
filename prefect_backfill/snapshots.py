"""What a Delta table holds, as values: its identity and its partitions' data files by key (the
content digest, bytes and rows of each), and how a log's values map to partition keys. Pure: read by
:mod:`prefect_backfill.tables` (delta-rs), compared by planning, drift and undo without loading it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import unquote

from prefect_backfill.partitions import Grain, Partition

__all__ = ["PartitionFiles", "TableSnapshot", "file_location", "partition_key"]


@dataclass(frozen=True, slots=True)
class PartitionFiles:
    """One partition's data files: a digest of their identity, their bytes and rows (from the log), and
    where they are (``paths``: absolute paths or URIs, so an undo can check they still exist)."""

    digest: str
    size_bytes: int
    num_records: int | None
    paths: tuple[str, ...] = ()


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
