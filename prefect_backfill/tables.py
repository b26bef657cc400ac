"""What a Delta table holds, partition by partition, read from its log alone (delta-rs, no JVM).

Two questions decide whether a completed partition is still complete, and both are answered by the
log in milliseconds, for every partition at once (luigi's "completeness in bulk"):

- **Is the source the same?** A partition's content is the set of its data files (Delta never rewrites
  a file in place: new data, a rewrite, an OPTIMIZE or a deletion vector all change the set), so a
  digest of the files' paths, sizes and deletion vectors (their deleted-row counts) identifies the
  content a result was computed from. Other files are not always other rows: a compaction rewrites
  files without changing data, which the log's commits since then tell (:func:`with_data_changes`).
- **Is the target still there?** The table id changes when a table is dropped and recreated, and a
  partition with no files is gone. The same digest, taken right after our commit and compared with
  today's, says whether another writer changed a partition since (see :mod:`prefect_backfill.drift`).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote

import pyarrow as pa

from prefect_backfill.drift import rewrite_suspects
from prefect_backfill.ledger_record import PartitionState, Status
from prefect_backfill.partitions import Grain
from prefect_backfill.schema_change import columns_of, shape_digest
from prefect_backfill.snapshots import DataChanges, PartitionFiles, TableSnapshot, file_location, partition_key
from prefect_backfill.storage import delta_options, read_text
from prefect_backfill.storage import files_missing as _files_missing

if TYPE_CHECKING:
    from deltalake import DeltaTable

__all__ = [
    "commits_touching",
    "covering_files",
    "explain_rewrites",
    "files_missing",
    "read_snapshot",
    "with_data_changes",
]


def read_snapshot(location: str, column: str, grain: Grain, version: int | None = None) -> TableSnapshot:
    """Partitions of the Delta table at ``location`` by partition key of ``grain`` (one log read), as of
    ``version`` (default: the latest).

    Rows are *live* rows: a file's ``numRecords`` minus the rows its deletion vector deletes. delta-rs
    1.6.6 leaves deletion vectors out of ``get_add_actions`` (checked: a Spark ``DELETE`` on a table with
    deletion vectors keeps the file's path, size and numRecords), so they are read apart, and only for
    tables whose protocol has them; each file's deleted-row count is part of the digest (a deletion
    vector only ever grows, so its count identifies it for its file)."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(location, version=version, storage_options=delta_options(location))
    except TableNotFoundError:
        return TableSnapshot(exists=False, location=location)
    metadata = table.metadata()
    shape = shape_digest(columns_of(table.schema().to_json()))
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    values = actions.get(f"partition.{column}")
    if values is None:  # not partitioned by that column: no per-partition answer from the log
        return TableSnapshot(True, str(metadata.id), table.version(), {}, known=False, location=location, shape=shape)
    deleted = _deleted_rows(table)
    files: dict[str, list[str]] = defaultdict(list)
    paths: dict[str, list[str]] = defaultdict(list)
    sizes: dict[str, int] = defaultdict(int)
    rows: dict[str, int | None] = {}
    for i, value in enumerate(values):
        key = partition_key(value, grain)
        if key is None:
            continue
        size = int(actions["size_bytes"][i])
        path = str(actions["path"][i])
        gone = deleted.get(_file_name(path), 0) if deleted else 0
        files[key].append(f"{path}:{size}:{gone}")
        paths[key].append(file_location(location, path))
        sizes[key] += size
        count = actions.get("num_records", [None] * len(values))[i]
        previous = rows.get(key, 0)
        rows[key] = None if count is None or previous is None else previous + int(count) - gone
    partitions = {
        key: PartitionFiles(
            hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16],
            sizes[key],
            rows[key],
            tuple(sorted(paths[key])),
        )
        for key, names in files.items()
    }
    return TableSnapshot(True, str(metadata.id), table.version(), partitions, location=location, shape=shape)


def covering_files(table: DeltaTable, location: str, column: str, grain: Grain) -> dict[str, tuple[str, ...]]:
    """The data files of each partition key of a table *not* partitioned by ``column`` (clustered or
    unpartitioned: a file holds many keys): every file whose statistics' range of ``column`` covers the key.
    A file without statistics for it belongs to no key (Spark, delta-rs and Delta's writers all write them)."""
    from prefect_backfill.partitions import partitions_between

    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    lows, highs = actions.get(f"min.{column}"), actions.get(f"max.{column}")
    if lows is None or highs is None:
        return {}
    files: dict[str, list[str]] = defaultdict(list)
    for path, low, high in zip(actions["path"], lows, highs, strict=True):
        if low is None or high is None:
            continue
        for partition in partitions_between(low, high, grain):
            files[partition.key].append(file_location(location, str(path)))
    return {key: tuple(sorted(paths)) for key, paths in files.items()}


def _deleted_rows(table: DeltaTable) -> dict[str, int]:
    """Rows deleted by deletion vectors, by data file name (unique: writers put a UUID in it; the add
    actions give paths relative to the table, this API full URIs); empty for a table without deletion
    vectors (no extra read then)."""
    if "deletionVectors" not in (table.protocol().reader_features or ()):
        return {}
    return {
        _file_name(str(row["filepath"])): sum(1 for keep in row["selection_vector"] if not keep)
        for row in pa.table(table.deletion_vectors()).to_pylist()
    }


def _file_name(path: str) -> str:
    return unquote(path).rsplit("/", 1)[-1]


def _log_value(text: str | None) -> date | datetime | None:
    """A partition value as the Delta log writes it (``2024-01-03``, ``2024-01-03 05:00:00[.000000]``)."""
    if not text:
        return None
    try:
        return date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
    except ValueError:
        return None


def commits_touching(
    location: str, column: str, grain: Grain, after: int, until: int, limit: int = 2_000
) -> list[tuple[int, str, frozenset[str]]]:
    """The commits ``after`` < version <= ``until`` of a table that added or removed files, as
    (version, operation, partition keys touched), oldest first: read from the commit files themselves
    (on the local disk or the object store). Only to *name* what changed a partition; whether it changed
    is decided by comparing digests (see :mod:`prefect_backfill.undo_planning`). Stops at ``limit`` commits."""
    log = f"{location.rstrip('/')}/_delta_log"
    out = []
    for version in range(after + 1, min(until, after + limit) + 1):
        text = read_text(f"{log}/{version:020d}.json")
        if text is None:  # cleaned up after the log retention (a checkpoint stands for it)
            continue
        commit = _parse_commit(text, column, grain)
        if commit.touched:
            out.append((version, commit.operation, commit.touched))
    return out


def with_data_changes(
    snapshot: TableSnapshot, column: str, grain: Grain, after: int, limit: int = 5_000
) -> TableSnapshot:
    """``snapshot`` with the log's word on which of its commits after version ``after`` changed data, by
    partition (:class:`DataChanges`): read from the commit files (a request each on a store), the newest
    ``limit`` at most. A commit file cleaned up after the log's retention cuts the history there: what
    came before it cannot be told (and stays a rewrite, see :mod:`prefect_backfill.drift`)."""
    if not snapshot.exists or snapshot.version is None or snapshot.location is None:
        return snapshot
    until = snapshot.version
    first = max(after, until - limit)
    log = f"{snapshot.location.rstrip('/')}/_delta_log"
    known_after, latest = first, dict[str, int]()
    for version in range(first + 1, until + 1):
        text = read_text(f"{log}/{version:020d}.json")
        if text is None:
            known_after, latest = version, dict[str, int]()  # nothing before this version can be told
            continue
        for key in _parse_commit(text, column, grain).changed:
            latest[key] = version
    return replace(snapshot, changes=DataChanges(known_after, until, latest))


def explain_rewrites(
    snapshot: TableSnapshot,
    column: str,
    grain: Grain,
    states: Mapping[str, PartitionState],
    role: Literal["source", "target"] = "target",
) -> TableSnapshot:
    """``snapshot`` of the ``role`` table ("target" or "source") with the log's data changes
    (:func:`with_data_changes`) when a completed partition's files are no longer the ones ``states``
    recorded of it, so that a compaction is not taken for a rewrite; as it is otherwise (the log is read
    again only then)."""
    complete = [(k, s) for k, s in states.items() if s.status is Status.COMPLETE]
    if role == "source":
        recorded = [(k, s.source_digest, s.source_version) for k, s in complete]
    else:
        recorded = [(k, s.target_digest, s.table_version) for k, s in complete]
    after = rewrite_suspects(snapshot, recorded)
    return snapshot if after is None else with_data_changes(snapshot, column, grain, after)


@dataclass(frozen=True, slots=True)
class _Commit:
    operation: str
    touched: frozenset[str]  # partitions with files added or removed
    changed: frozenset[str]  # those of them whose actions changed data (``dataChange``, true if absent)


def _parse_commit(text: str, column: str, grain: Grain) -> _Commit:
    """One commit file's operation and the partitions its add and remove actions touch and change."""
    operation, touched, changed = "?", set(), set()
    for line in text.splitlines():
        if not line.strip():
            continue
        action = json.loads(line)
        if "commitInfo" in action:
            operation = str(action["commitInfo"].get("operation", "?"))
        for kind in ("add", "remove"):
            if kind in action:
                value = _log_value((action[kind].get("partitionValues") or {}).get(column))
                key = partition_key(value, grain) if value is not None else None
                if key is not None:
                    touched.add(key)
                    if action[kind].get("dataChange", True) is not False:
                        changed.add(key)
    return _Commit(operation, frozenset(touched), frozenset(changed))


def files_missing(paths: tuple[str, ...]) -> int:
    """How many of ``paths`` (from :attr:`PartitionFiles.paths`) no longer exist in storage: a VACUUM
    deletes the files of old versions while the log still lists them."""
    return _files_missing(paths)
