"""Which partitions a backfill runs, in which order, and why the others are skipped.

Pure set arithmetic over values (Dagster's ``target − done``): the caller hands in the range and the
ledger's current state; nothing here touches Spark, Delta or Prefect, so every rule is unit-tested
in milliseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.partitions import Partition

__all__ = ["PartitionState", "Plan", "Reprocess", "Skip", "Status", "plan", "without_held"]


class Status(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


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
class PartitionState:
    """The ledger's latest word on one partition."""

    partition: str
    status: Status
    fingerprint: str
    version: str
    run_id: str
    updated_at: datetime
    error: str | None = None
    rows_out: int | None = None
    duration_s: float | None = None
    attempt: int | None = None
    rows_in: int | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    partition: Partition
    reason: str


@dataclass(frozen=True)
class Plan:
    """What a run will do: ``to_run`` in execution order, and every skipped partition with its reason."""

    pipeline: str
    fingerprint: str
    reprocess: Reprocess
    to_run: tuple[Partition, ...]
    skipped: tuple[Skip, ...]

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
        reasons: dict[str, int] = {}
        for skip in self.skipped:
            reasons[skip.reason.split(" (")[0]] = reasons.get(skip.reason.split(" (")[0], 0) + 1
        lines.extend(f"  skip: {count} {reason}" for reason, count in sorted(reasons.items()))
        return "\n".join(lines)


def _decide(state: PartitionState | None, fingerprint: str, reprocess: Reprocess) -> str | None:
    """The reason to skip a partition, or None to run it."""
    if reprocess is Reprocess.ALL:
        return None
    if reprocess is Reprocess.FAILED:
        if state is not None and state.status is Status.FAILED:
            return None
        return f"not failed ({state.status.value.lower() if state else 'never run'})"
    if state is not None and state.status is Status.COMPLETE and state.fingerprint == fingerprint:
        return f"complete at version {state.version} (run {state.run_id[:8]}, {state.updated_at:%Y-%m-%d %H:%M})"
    return None


def plan(
    pipeline: str,
    fingerprint: str,
    partitions: Iterable[Partition],
    current: Mapping[str, PartitionState],
    reprocess: Reprocess = Reprocess.MISSING,
    *,
    exclude: Collection[str] = (),
    newest_first: bool = False,
) -> Plan:
    """Split ``partitions`` into those to run and those skipped (with reasons), in execution order."""
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
    for partition in ordered:
        if partition.key in excluded:
            skipped.append(Skip(partition, "excluded by request"))
            continue
        reason = _decide(current.get(partition.key), fingerprint, reprocess)
        if reason is None:
            to_run.append(partition)
        else:
            skipped.append(Skip(partition, reason))
    return Plan(pipeline, fingerprint, reprocess, tuple(to_run), tuple(skipped))


def without_held(the_plan: Plan, held: Mapping[str, str]) -> Plan:
    """Leave out of ``the_plan`` the partitions another live run holds (key → its run id)."""
    if not held:
        return the_plan
    to_run = tuple(p for p in the_plan.to_run if p.key not in held)
    newly = tuple(Skip(p, f"held by run {held[p.key][:8]} (running now)") for p in the_plan.to_run if p.key in held)
    return replace(the_plan, to_run=to_run, skipped=the_plan.skipped + newly)
