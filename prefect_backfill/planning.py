"""Which partitions a backfill runs, in which order, and why the others are skipped.

Pure set arithmetic over values (Dagster's ``target − done``): the caller hands in the range and the
ledger's current state; nothing here touches Spark, Delta or Prefect, so every rule is unit-tested
in milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from prefect_backfill.cascade import upstream_reason
from prefect_backfill.drift import recorded_drift
from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.ledger_record import PartitionState, Status
from prefect_backfill.partitions import Partition
from prefect_backfill.reasons import DueKind, DueReason, SkipKind, SkipReason
from prefect_backfill.snapshots import TableSnapshot

__all__ = [
    "DueKind",
    "DueReason",
    "PartitionState",
    "Plan",
    "Reprocess",
    "Skip",
    "SkipKind",
    "SkipReason",
    "Status",
    "held_keys",
    "leave_out",
    "make_plan",
    "without_done_since",
    "without_held",
]


class Reprocess(enum.StrEnum):
    """Which partitions of the range a run takes.

    ``missing`` (default): everything not complete for the current transform version, i.e. never run,
    failed, interrupted (stale RUNNING/PENDING) and stale-version partitions. ``failed``: only those
    whose latest attempt failed. ``all``: every partition, refreshing the cache.
    """

    MISSING = "missing"
    FAILED = "failed"
    ALL = "all"

    @classmethod
    def parse(cls, value: str) -> Reprocess:
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidRequestError(f"reprocess {value!r} is not one of missing, failed, all") from None


@dataclass(frozen=True, slots=True)
class Skip:
    partition: Partition
    reason: SkipReason


@dataclass(frozen=True)
class Plan:
    """What a run will do: ``to_run`` in execution order with why each is due (``why``), every skipped
    partition with its reason, and ``notes`` worth a look before running (e.g. partitions the source has
    no data for). Reasons are typed (:mod:`prefect_backfill.reasons`): code reads their ``kind``."""

    pipeline: str
    fingerprint: str
    reprocess: Reprocess
    to_run: tuple[Partition, ...]
    skipped: tuple[Skip, ...]
    why: Mapping[str, DueReason] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return len(self.to_run) + len(self.skipped)

    def __str__(self) -> str:
        lines = [
            f"plan for {self.pipeline} (version {self.fingerprint}, reprocess={self.reprocess.value}): "
            f"{len(self.to_run)} to run, {len(self.skipped)} skipped of {self.total}"
        ]
        if self.to_run:
            keys = [p.key for p in self.to_run]
            shown = ", ".join(keys[:6]) + (f", … {keys[-1]}" if len(keys) > 6 else "")
            lines.append(f"  run:  {shown}")
            lines.extend(f"  run:  {count} {reason}" for reason, count in _count(self.why.values()))
        lines.extend(f"  skip: {count} {reason}" for reason, count in _count(s.reason for s in self.skipped))
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _count(reasons: Iterable[DueReason | SkipReason]) -> list[tuple[str, int]]:
    """Reasons by their phrase, without their per-partition details ("… (run abc, …)"), counted."""
    counts: dict[str, int] = {}
    for reason in reasons:
        counts[reason.head] = counts.get(reason.head, 0) + 1
    return sorted(counts.items())


def _drift(
    key: str, state: PartitionState, source: TableSnapshot | None, target: TableSnapshot | None
) -> DueReason | None:
    """Why a partition the ledger records as complete is not complete any more, or None.

    The ledger says what was written; the tables' logs say what is there now. A partition is complete
    only if both agree: the target still holds what was written (:func:`~prefect_backfill.drift.target_drift`:
    same table, the partition present, its rows and files as recorded), and the source partition holds
    the same files the result was computed from, or only a compaction of them (no commit since the
    recorded source version changed its data: :class:`~prefect_backfill.snapshots.DataChanges`)."""
    if target is not None:
        drift = recorded_drift(key, target, state)
        if drift is not None:
            return drift.due
    if source is not None and source.known:
        if state.source_digest is None:
            return DueReason(DueKind.SOURCE_UNRECORDED, "written by an older release")
        if source.digest(key) != state.source_digest:
            if source.changes is not None and source.changes.unchanged_since(key, state.source_version):
                return None  # the source partition was compacted since: other files, the same rows
            return DueReason(DueKind.SOURCE_CHANGED)
    return None


def _decide(
    key: str,
    state: PartitionState | None,
    fingerprint: str,
    reprocess: Reprocess,
    source: TableSnapshot | None,
    target: TableSnapshot | None,
) -> DueReason | SkipReason:
    """Why the partition runs (a :class:`DueReason`) or why not (a :class:`SkipReason`)."""
    if reprocess is Reprocess.ALL:
        return DueReason(DueKind.REPROCESS_ALL)
    if reprocess is Reprocess.FAILED:
        if state is not None and state.status is Status.FAILED:
            return DueReason(DueKind.FAILED)
        return SkipReason(SkipKind.NOT_FAILED, state.status.value.lower() if state else "never run")
    if state is None:
        return DueReason(DueKind.NEVER_RUN)
    if state.status is Status.COMPLETE and state.fingerprint == fingerprint:
        drift = _drift(key, state, source, target)
        if drift is not None:
            return drift
        return SkipReason(
            SkipKind.COMPLETE,
            f"run {state.run_id[:8]}, {state.updated_at:%Y-%m-%d %H:%M}",
            head=f"complete at version {state.version}",
        )
    if state.status is Status.COMPLETE:
        return DueReason(DueKind.STALE, head=f"stale: written by version {state.version}")
    if state.status is Status.UNDONE:
        return DueReason(DueKind.UNDONE)
    if state.status is Status.STALE:
        return DueReason(DueKind.UPSTREAM_CHANGED, upstream_reason(state.upstream, state.run_id))
    return DueReason(DueKind.FAILED if state.status is Status.FAILED else DueKind.INTERRUPTED)


def make_plan(
    pipeline: str,
    fingerprint: str,
    partitions: Iterable[Partition],
    current: Mapping[str, PartitionState],
    reprocess: Reprocess = Reprocess.MISSING,
    *,
    exclude: Collection[str] = (),
    newest_first: bool = False,
    source: TableSnapshot | None = None,
    target: TableSnapshot | None = None,
) -> Plan:
    """Split ``partitions`` into those to run and those skipped (with reasons), in execution order.

    ``source`` and ``target`` are the tables' snapshots from their logs (None: not known, trust the
    ledger): with them, a partition complete in the ledger runs again if its source changed or its
    target partition is gone."""
    excluded = set(exclude)
    ordered = sorted(partitions, reverse=newest_first)
    known = {p.key for p in ordered}
    unknown = sorted(excluded - known)
    if unknown:
        raise InvalidRequestError(
            f"excluded partition(s) {', '.join(unknown[:5])} are not in the range: check the keys"
        )
    to_run: list[Partition] = []
    skipped: list[Skip] = []
    why: dict[str, DueReason] = {}
    for partition in ordered:
        if partition.key in excluded:
            skipped.append(Skip(partition, SkipReason(SkipKind.EXCLUDED)))
            continue
        reason = _decide(partition.key, current.get(partition.key), fingerprint, reprocess, source, target)
        if isinstance(reason, DueReason):
            to_run.append(partition)
            why[partition.key] = reason
        else:
            skipped.append(Skip(partition, reason))
    notes = []
    if source is not None and source.known and source.exists and to_run:
        empty = [p.key for p in to_run if not source.has(p.key)]
        if empty:
            span = f"{min(source.partitions)} … {max(source.partitions)}" if source.partitions else "none"
            notes.append(
                f"{len(empty)} of {len(to_run)} partitions to run have no data in the source (its partitions: "
                f"{span}); they fail as empty unless the pipeline allows empty partitions"
            )
    return Plan(pipeline, fingerprint, reprocess, tuple(to_run), tuple(skipped), why, tuple(notes))


def leave_out(plan: Plan, reasons: Mapping[str, SkipReason]) -> Plan:
    """``plan`` without the partitions of ``reasons`` (key → why), which become skipped with that
    reason. The one way anything is taken out of a plan after it was made."""
    if not reasons:
        return plan
    to_run = tuple(p for p in plan.to_run if p.key not in reasons)
    newly = tuple(Skip(p, reasons[p.key]) for p in plan.to_run if p.key in reasons)
    why = {k: v for k, v in plan.why.items() if k not in reasons}
    return replace(plan, to_run=to_run, skipped=plan.skipped + newly, why=why)


def without_done_since(plan: Plan, current: Mapping[str, PartitionState], since: datetime, own_run_id: str) -> Plan:
    """Leave out of ``plan`` what another run completed, for this fingerprint, after ``since`` (when
    the plan was made): a run that waited for the cap must not write those again."""
    done = {
        p.key: SkipReason(SkipKind.DONE_MEANWHILE, f"run {state.run_id[:8]}")
        for p in plan.to_run
        if (state := current.get(p.key)) is not None
        and state.status is Status.COMPLETE
        and state.fingerprint == plan.fingerprint
        and state.run_id != own_run_id
        and state.updated_at >= since
    }
    return leave_out(plan, done)


def without_held(plan: Plan, held: Mapping[str, str]) -> Plan:
    """Leave out of ``plan`` the partitions another live run holds (key → who holds it)."""
    return leave_out(plan, {key: SkipReason(SkipKind.HELD, who) for key, who in held.items()})


def held_keys(plan: Plan) -> tuple[str, ...]:
    """The partitions ``plan`` leaves to another live run."""
    return tuple(s.partition.key for s in plan.skipped if s.reason.kind is SkipKind.HELD)
