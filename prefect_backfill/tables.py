"""What a Delta table holds, partition by partition, read from its log alone (delta-rs, no JVM).

Two questions decide whether a completed partition is still complete, and both are answered by the
log in milliseconds, for every partition at once (luigi's "completeness in bulk"):

- **Is the source the same?** A partition's content is the set of its data files (Delta never rewrites
  a file in place: new data, a rewrite, an OPTIMIZE or a deletion vector all change the set), so a
  digest of the files' paths, sizes and deletion vectors identifies the content a result was computed
  from. A compaction of the source makes its partitions due again: wasteful, never wrong.
- **Is the target still there?** The table id changes when a table is dropped and recreated, and a
  partition with no files is gone.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import pyarrow as pa

from prefect_backfill.partitions import Grain, Partition

__all__ = ["PartitionFiles", "TableSnapshot", "partition_key", "read_snapshot"]


@dataclass(frozen=True, slots=True)
class PartitionFiles:
    """One partition's data files: a digest of their identity, their bytes and rows (from the log)."""

    digest: str
    size_bytes: int
    num_records: int | None


@dataclass(frozen=True)
class TableSnapshot:
    """A table's identity and its partitions by key; ``known=False`` when the log could not be read
    (a catalog table whose storage delta-rs cannot open): then nothing can be concluded from it."""

    exists: bool
    table_id: str | None = None
    version: int | None = None
    partitions: Mapping[str, PartitionFiles] = field(default_factory=dict)
    known: bool = True

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


def read_snapshot(location: str, column: str, grain: Grain) -> TableSnapshot:
    """Partitions of the Delta table at ``location`` by partition key of ``grain`` (one log read)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(location)
    except TableNotFoundError:
        return TableSnapshot(exists=False)
    metadata = table.metadata()
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    values = actions.get(f"partition.{column}")
    if values is None:  # not partitioned by that column: no per-partition answer
        return TableSnapshot(True, str(metadata.id), table.version(), {}, known=False)
    dv_columns = sorted(name for name in actions if name.startswith("deletionVector"))
    files: dict[str, list[str]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    rows: dict[str, int | None] = {}
    for i, value in enumerate(values):
        key = partition_key(value, grain)
        if key is None:
            continue
        size = int(actions["size_bytes"][i])
        dv = "|".join(str(actions[name][i]) for name in dv_columns)
        files[key].append(f"{actions['path'][i]}:{size}:{dv}")
        sizes[key] += size
        count = actions.get("num_records", [None] * len(values))[i]
        previous = rows.get(key, 0)
        rows[key] = None if count is None or previous is None else previous + int(count)
    partitions = {
        key: PartitionFiles(hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16], sizes[key], rows[key])
        for key, names in files.items()
    }
    return TableSnapshot(True, str(metadata.id), table.version(), partitions)
