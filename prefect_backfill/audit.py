"""``backfill audit``: the ledger against the table, partition by partition.

The ledger says what was written (a COMPLETE event: rows, target table id, the digest of the files our
commit wrote); the target's Delta log says what is there now. :func:`audit` compares them for every
COMPLETE partition of a range with :func:`~prefect_backfill.drift.target_drift`, the same comparison
planning makes, so what the audit reports is exactly what the next plain ``backfill run`` repairs.

Pure apart from :func:`read_target`: states and a snapshot in, frozen findings out.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect_backfill.drift import DriftKind, recorded_drift
from prefect_backfill.partitions import Partition
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import PartitionState, Status
from prefect_backfill.snapshots import CONTENT_DIGEST, TableSnapshot
from prefect_backfill.tables import explain_rewrites, read_snapshot

__all__ = ["AuditReport", "Finding", "audit", "read_target"]

#: How many partition keys a repair command lists before it names the range instead.
_LISTED = 20


@dataclass(frozen=True, slots=True)
class Finding:
    """One partition whose target no longer holds what the ledger recorded."""

    partition: str
    kind: DriftKind
    expected_rows: int | None  # what the ledger says was written
    found_rows: int | None  # live rows in the table now (None: unknown)
    expected_digest: str | None
    found_digest: str | None
    detail: str  # the plan's reason: why the next run takes it
    run_id: str
    version: str  # the transform version that wrote it
    written_at: datetime
    table_version: int | None  # the target commit that wrote it

    @property
    def ledger_says(self) -> str:
        rows = f"{self.expected_rows:,} rows" if self.expected_rows is not None else "rows unknown"
        commit = f", commit v{self.table_version}" if self.table_version is not None else ""
        return f"{rows} (run {self.run_id[:8]}{commit})"

    @property
    def table_holds(self) -> str:
        if self.kind is DriftKind.TARGET_MISSING:
            return "no table"
        if self.kind is DriftKind.TARGET_RECREATED:
            return "another table (recreated)"
        if self.kind is DriftKind.MISSING:
            return "no files"
        rows = f"{self.found_rows:,} rows" if self.found_rows is not None else "rows unknown"
        if self.kind is not DriftKind.REWRITTEN:
            return rows
        by_rows = self.found_digest is not None and self.found_digest.startswith(CONTENT_DIGEST)
        return f"{rows} with other values" if by_rows else f"{rows} in other files"

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "kind": self.kind.value,
            "expected": {
                "rows": self.expected_rows,
                "target_digest": self.expected_digest,
                "run_id": self.run_id,
                "version": self.version,
                "written_at": self.written_at.isoformat(),
                "table_version": self.table_version,
            },
            "found": {"rows": self.found_rows, "target_digest": self.found_digest},
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditReport:
    """The audit of ``partitions`` of one pipeline: every COMPLETE one compared (``checked``), the
    drifted ones (``findings``), and those whose rewrites cannot be told (``unverified``: written by a
    release that recorded no target digest, or by a catalog target; presence and rows are still checked)."""

    pipeline: str
    target: str
    partitions: tuple[str, ...]
    checked: int
    findings: tuple[Finding, ...]
    unverified: tuple[str, ...]
    target_version: int | None

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def repair_command(self) -> str | None:
        """The plain ``backfill run`` that repairs every finding (drift is due under the default policy):
        the keys themselves, or their span when there are many (it then also takes anything else due)."""
        keys = [f.partition for f in self.findings]
        if not keys:
            return None
        if len(keys) <= _LISTED:
            return shlex.join(["backfill", "run", self.pipeline, "--partitions", ",".join(keys)])
        return shlex.join(["backfill", "run", self.pipeline, "--start", keys[0], "--end", keys[-1]])

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "target": self.target,
            "range": [self.partitions[0], self.partitions[-1]] if self.partitions else None,
            "target_version": self.target_version,
            "checked": self.checked,
            "clean": self.clean,
            "findings": [f.to_dict() for f in self.findings],
            "unverified": list(self.unverified),
            "repair_command": self.repair_command,
        }


def audit(
    pipeline: str,
    target_name: str,
    partitions: Sequence[str],
    states: Mapping[str, PartitionState],
    target: TableSnapshot,
) -> AuditReport:
    """Compare every partition of ``partitions`` that ``states`` (the ledger's latest word) records as
    COMPLETE, whatever its transform version, with ``target`` (the table's log now)."""
    findings: list[Finding] = []
    unverified: list[str] = []
    checked = 0
    for key in partitions:
        state = states.get(key)
        if state is None or state.status is not Status.COMPLETE:
            continue
        checked += 1
        drift = recorded_drift(key, target, state)
        if drift is not None:
            findings.append(
                Finding(
                    partition=key,
                    kind=drift.kind,
                    expected_rows=drift.expected_rows,
                    found_rows=drift.found_rows,
                    expected_digest=drift.expected_digest,
                    found_digest=drift.found_digest,
                    detail=drift.reason,
                    run_id=state.run_id,
                    version=state.version,
                    written_at=state.updated_at,
                    table_version=state.table_version,
                )
            )
        elif state.target_digest is None:
            unverified.append(key)
    return AuditReport(
        pipeline, target_name, tuple(partitions), checked, tuple(findings), tuple(unverified), target.version
    )


def read_target(
    pipeline: Pipeline, states: Mapping[str, PartitionState], *, rows_of: Sequence[Partition] | None = None
) -> TableSnapshot:
    """The target's snapshot, to compare with ``states``: a path table's log read by delta-rs (no JVM), and a
    catalog table's whose storage its metastore gave (:mod:`prefect_backfill.catalog`); another catalog
    table's through the engine (Spark finds its location). With the log's data changes where a
    partition's files changed (a compaction is not a rewrite: :mod:`prefect_backfill.drift`). A clustered or
    unpartitioned target's log cannot tell its partitions apart: given ``rows_of``, those partitions (all
    when empty) are read instead, by a digest of their rows (one Spark job); without it, the snapshot is
    unknown (``backfill status`` starts no Spark)."""
    from prefect_backfill.engine import get_engine

    column, grain = pipeline.partition_column, pipeline.grain
    if pipeline.target.path:
        target = read_snapshot(pipeline.target.path, column, grain)
    else:
        target = get_engine().snapshot(pipeline.target, column, grain)
    if (
        rows_of is not None
        and not target.known
        and target.exists
        and get_engine().describe(pipeline.target).mixes_partitions()
    ):
        return get_engine().content_snapshot(pipeline.target, column, grain, keys=rows_of)
    return explain_rewrites(target, column, grain, states)
