"""Does the target still hold what was recorded for a partition? One pure comparison, shared by
planning (a drifted partition is due again), the cache (a record is never served over drifted data),
``backfill audit`` and ``backfill status``, so they can never disagree.

What was recorded (by the ledger's COMPLETE event, or a cache record): the rows written, the target's
table id, and the digest of the partition's files right after our commit. What is there now: the
target's snapshot from its Delta log (no data read). Drift, in the order it is told apart:

- the target table is gone, or was recreated (another table id);
- the partition is **missing** (no files) although rows were written;
- the partition is **empty** (files, but no live rows: deletion vectors deleted them all);
- its live **rows** (the log's ``numRecords`` minus deleted rows) differ from the rows written;
- it was **rewritten** by another writer: same rows, but not the files our commit wrote.

An unknown recorded value (a ledger from an older release has no digest; a file without statistics
has no row count) means "cannot tell", never drift: an upgrade must not make every partition due.

A compaction of the target (OPTIMIZE, auto-compaction, a purge of deletion vectors) changes a partition's
files without changing its rows; Delta marks its actions ``dataChange: false``. Files that differ from the
recorded digest are a rewrite only if a commit after ours changed the partition's data: when the digests
differ, the caller reads the log's commits since the oldest recorded version (:func:`rewrite_suspects`
says from where; :func:`prefect_backfill.tables.with_data_changes` reads them) and a partition only
compacted since is not drifted. Where the log cannot tell (commit files cleaned up, no recorded version)
a changed digest stays a rewrite: the partition runs again, wasteful, never wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from prefect_backfill.ledger_record import PartitionState
from prefect_backfill.reasons import DueKind, DueReason
from prefect_backfill.snapshots import CONTENT_DIGEST, TableSnapshot

__all__ = ["Drift", "DriftKind", "is_target_drift", "recorded_drift", "rewrite_suspects", "target_drift"]


class DriftKind(enum.StrEnum):
    TARGET_MISSING = "target_missing"
    TARGET_RECREATED = "target_recreated"
    MISSING = "missing"
    EMPTY = "empty"
    ROWS = "rows"
    REWRITTEN = "rewritten"


#: The plan's phrase for each kind (the head of its reason, which the plan counts by).
REASONS = {
    DriftKind.TARGET_MISSING: "target table missing",
    DriftKind.TARGET_RECREATED: "target table recreated since it was written",
    DriftKind.MISSING: "partition missing from the target",
    DriftKind.EMPTY: "partition emptied in the target",
    DriftKind.ROWS: "row count in the target differs from the ledger",
    DriftKind.REWRITTEN: "partition rewritten by another writer",
}


@dataclass(frozen=True, slots=True)
class Drift:
    """How one partition's target differs from what was recorded."""

    kind: DriftKind
    expected_rows: int | None
    found_rows: int | None
    expected_digest: str | None
    found_digest: str | None
    detail: str

    @property
    def due(self) -> DueReason:
        """The plan's reason: the target drifted, phrased by its kind, with the detail when there is one."""
        return DueReason(DueKind.TARGET_DRIFTED, self.detail, head=REASONS[self.kind])

    @property
    def reason(self) -> str:
        """The plan's reason as text (``backfill audit`` shows it)."""
        return str(self.due)


def is_target_drift(reason: object) -> bool:
    """Whether a plan reason says the target drifted (as opposed to never run, failed, stale, …): by its
    kind; a bare text is no typed reason, so it never does."""
    return isinstance(reason, DueReason) and reason.kind is DueKind.TARGET_DRIFTED


def target_drift(
    key: str,
    target: TableSnapshot,
    *,
    rows: int | None,
    digest: str | None,
    target_id: str | None,
    table_version: int | None = None,
) -> Drift | None:
    """How partition ``key`` of ``target`` differs from what was recorded for it (``rows`` written, the
    files' ``digest`` right after the commit, the ``target_id`` written to, the ``table_version`` that
    commit made), or None if it does not or it cannot be told (an unknown snapshot, unknown recorded
    values). Other files with the same rows are no drift where ``target.changes`` shows that no commit
    after ``table_version`` changed the partition's data (a compaction)."""
    if not target.known:
        return None
    if not target.exists:
        return Drift(DriftKind.TARGET_MISSING, rows, None, digest, None, "")
    if digest is not None and digest.startswith(CONTENT_DIGEST) != target.content:
        digest = None  # a digest of rows against one of files (the target's layout changed): cannot tell
    if target_id and target.table_id != target_id:
        return Drift(DriftKind.TARGET_RECREATED, rows, None, digest, None, "")
    files = target.partitions.get(key)
    if files is None:
        if (rows or 0) > 0:
            return Drift(DriftKind.MISSING, rows, 0, digest, "", "")
        return None  # written empty (allowed), still empty
    found = files.num_records
    if found is not None and rows is not None and found != rows:
        kind = DriftKind.EMPTY if found == 0 else DriftKind.ROWS
        return Drift(kind, rows, found, digest, files.digest, f"{found:,} rows, the ledger says {rows:,}")
    if digest is not None and files.digest != digest:
        if target.changes is not None and target.changes.unchanged_since(key, table_version):
            return None  # compacted since: other files, the same data
        same = f"the same {found:,} rows" if found is not None else "rows unknown"
        what = "other values than it wrote" if target.content else "not the files it wrote"
        return Drift(DriftKind.REWRITTEN, rows, found, digest, files.digest, f"{same}, {what}")
    return None


def recorded_drift(key: str, target: TableSnapshot, state: PartitionState) -> Drift | None:
    """:func:`target_drift` of what the ledger's latest word ``state`` recorded for partition ``key``."""
    return target_drift(
        key,
        target,
        rows=state.rows_out,
        digest=state.target_digest,
        target_id=state.target_id,
        table_version=state.table_version,
    )


def rewrite_suspects(target: TableSnapshot, recorded: Iterable[tuple[str, str | None, int | None]]) -> int | None:
    """The oldest recorded table version among partitions whose files are no longer the ones recorded,
    from ``(key, digest, table_version)`` of the completed partitions: the log's commits after it tell a
    compaction from a rewrite (:func:`target_drift`). None when no partition's files changed (the common
    case: the log is not read again) or none of those has a recorded version."""
    if not target.known or not target.exists or target.content:
        return None  # (digests of rows do not change with a compaction: nothing to explain)
    versions = [
        version
        for key, digest, version in recorded
        if digest is not None and version is not None and key in target.partitions and target.digest(key) != digest
    ]
    return min(versions, default=None)
