"""Downstream cascade: which partitions of a downstream pipeline depend on which of its upstream's. Pure.

A pipeline declares its upstream pipelines (:class:`Upstream`), each with a partition mapping:

- :class:`Identity`: the same grain, partition for partition;
- :class:`RollUp`: a finer upstream into a coarser downstream (hour → day, hour → month, day → month), the
  downstream's calendar in ``timezone``: a Europe/Berlin day is the 23, 24 or 25 UTC hours between its local
  midnights (upstream hour keys are UTC, like every key of this package);
- :class:`LookBack`: the same grain, a downstream partition depends on its own upstream partition and the
  ``partitions`` before it (a rolling window), so an upstream change reaches that many downstream ones after it;
- :class:`Custom`: a function from a downstream partition to the upstream partitions it reads.

And a policy (:class:`Policy`) per edge, defaulting to the downstream pipeline's own: ``none`` (nothing), ``mark``
(what an upstream run completes makes the downstream partitions that depend on it STALE in their ledger, with
the upstream run and partitions as the reason, so the downstream's next default run takes exactly them).
``mark`` is the default: ``none`` leaves gold silently wrong, which is the problem this package exists for;
running downstream work in the same run would start compute nobody asked for, on the upstream's pool and
window; a mark costs one ledger append per upstream commit and shows in ``status``, ``plan`` and the events.

Everything here is a value or a function of values: the registry checks a declaration when pipelines are
loaded (:func:`check_edges`), the executor asks :func:`downstream_of` after a commit, the engine asks
:func:`upstream_of` which source partitions a downstream chunk reads.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect_backfill.errors import PipelineDefinitionError
from prefect_backfill.partitions import Grain, Partition

__all__ = [
    "Custom",
    "Identity",
    "LookBack",
    "Node",
    "PartitionMapping",
    "Policy",
    "RollUp",
    "Upstream",
    "check_edges",
    "downstream_of",
    "mark_record",
    "policy_of",
    "upstream_of",
    "upstream_reason",
]

_FINENESS = {Grain.HOUR: 0, Grain.DAY: 1, Grain.MONTH: 2}
_ADJECTIVE = {Grain.HOUR: "hourly", Grain.DAY: "daily", Grain.MONTH: "monthly"}


class Policy(enum.StrEnum):
    """What an upstream run does to the downstream partitions that depend on what it completed."""

    NONE = "none"
    MARK = "mark"

    @classmethod
    def parse(cls, value: object, what: str) -> Policy:
        """``value`` as a policy (any case); else one line naming ``what`` and the policies there are."""
        if isinstance(value, Policy):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise PipelineDefinitionError(
                f"{what}: cascade policy {value!r} is not one of {', '.join(p.value for p in cls)}"
            ) from None


@dataclass(frozen=True, slots=True)
class Identity:
    """The same grain, partition for partition."""

    def describe(self) -> str:
        return "identity"


@dataclass(frozen=True, slots=True)
class RollUp:
    """A finer upstream into a coarser downstream, in the downstream's calendar of ``timezone``."""

    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise PipelineDefinitionError(
                f"roll-up time zone {self.timezone!r} is not an IANA time zone: write one like Europe/Berlin or UTC"
            ) from None

    def describe(self) -> str:
        return "roll-up" + ("" if self.timezone == "UTC" else f" ({self.timezone})")


@dataclass(frozen=True, slots=True)
class LookBack:
    """The same grain; a downstream partition reads its own upstream partition and ``partitions`` before it."""

    partitions: int

    def __post_init__(self) -> None:
        if not isinstance(self.partitions, int) or self.partitions < 1:
            raise PipelineDefinitionError(
                f"look-back of {self.partitions!r} partitions: give a whole number of at least 1 "
                "(no look-back at all is Identity())"
            )

    def describe(self) -> str:
        return f"look-back {self.partitions}"


@dataclass(frozen=True, slots=True)
class Custom:
    """``upstream_of(downstream partition)`` gives the upstream partitions it reads. An upstream change is
    traced to the downstream partitions starting within ``reach`` of it (the function is only called there)."""

    upstream_of: Callable[[Partition], Iterable[Partition]]
    reach: timedelta = timedelta(days=31)

    def describe(self) -> str:
        return f"custom ({getattr(self.upstream_of, '__name__', 'function')})"


PartitionMapping = Identity | RollUp | LookBack | Custom


@dataclass(frozen=True, slots=True)
class Upstream:
    """An edge: this pipeline reads what ``pipeline`` writes, through ``mapping``; ``policy`` (None: the
    downstream pipeline's ``cascade``) says what an upstream run does to the partitions that depend on it."""

    pipeline: str
    mapping: PartitionMapping = field(default_factory=Identity)
    policy: Policy | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mapping, Identity | RollUp | LookBack | Custom):
            raise PipelineDefinitionError(
                f"upstream {self.pipeline!r}: mapping {self.mapping!r} is not a partition mapping: use Identity(), "
                "RollUp(timezone=…), LookBack(n) or Custom(upstream_of)"
            )
        if self.policy is not None:
            object.__setattr__(self, "policy", Policy.parse(self.policy, f"upstream {self.pipeline!r}"))


def _shift(partition: Partition, steps: int) -> Partition:
    moment = partition.start
    if partition.grain is Grain.HOUR:
        return Partition(moment + timedelta(hours=steps), partition.grain)
    if partition.grain is Grain.DAY:
        return Partition(moment + timedelta(days=steps), partition.grain)
    months = moment.year * 12 + moment.month - 1 + steps
    return Partition(moment.replace(year=months // 12, month=months % 12 + 1), partition.grain)


def _local_start(partition: Partition, tz: ZoneInfo) -> datetime:
    """The UTC instant where ``partition`` (a day or month of the calendar in ``tz``) begins."""
    local = datetime(partition.start.year, partition.start.month, partition.start.day, tzinfo=tz)
    return local.astimezone(UTC).replace(tzinfo=None)


def _roll_up(up: Partition, down_grain: Grain, timezone: str) -> Partition:
    """The downstream partition an upstream one rolls up into."""
    if up.grain is Grain.HOUR:
        local = up.start.replace(tzinfo=UTC).astimezone(ZoneInfo(timezone))
        day = datetime(local.year, local.month, local.day)
    else:
        day = up.start
    if down_grain is Grain.MONTH:
        day = day.replace(day=1)
    return Partition(day, down_grain)


def upstream_of(mapping: PartitionMapping, down: Partition, up_grain: Grain) -> list[Partition]:
    """The upstream partitions (of ``up_grain``) that downstream partition ``down`` reads, oldest first."""
    if isinstance(mapping, Identity):
        return [down]
    if isinstance(mapping, LookBack):
        return [_shift(down, -n) for n in range(mapping.partitions, -1, -1)]
    if isinstance(mapping, Custom):
        return sorted(set(mapping.upstream_of(down)))
    # RollUp: every upstream partition between this downstream partition's start and the next one's.
    if up_grain is Grain.HOUR:
        tz = ZoneInfo(mapping.timezone)
        first, end = _local_start(down, tz), _local_start(down.following(), tz)
        hours = int((end - first).total_seconds() // 3600)
        return [Partition(first + timedelta(hours=h), Grain.HOUR) for h in range(hours)]
    days = (down.following().start - down.start).days
    return [Partition(down.start + timedelta(days=d), Grain.DAY) for d in range(days)]


def downstream_of(
    mapping: PartitionMapping, ups: Iterable[Partition], down_grain: Grain
) -> dict[Partition, tuple[Partition, ...]]:
    """The downstream partitions (of ``down_grain``) that depend on any of ``ups``, each with the ones of
    ``ups`` that pulled it in (the reason a mark records)."""
    pulled: dict[Partition, set[Partition]] = {}
    for up in ups:
        for down in _reached(mapping, up, down_grain):
            pulled.setdefault(down, set()).add(up)
    return {down: tuple(sorted(pulled[down])) for down in sorted(pulled)}


def _reached(mapping: PartitionMapping, up: Partition, down_grain: Grain) -> list[Partition]:
    if isinstance(mapping, Identity):
        return [up]
    if isinstance(mapping, LookBack):
        return [_shift(up, n) for n in range(mapping.partitions + 1)]
    if isinstance(mapping, RollUp):
        return [_roll_up(up, down_grain, mapping.timezone)]
    # Custom: the downstream partitions starting within reach of ``up`` whose upstream includes it.
    lo = Partition(up.start - mapping.reach, up.grain).start
    candidate = _first_at_or_after(lo, down_grain)
    found = []
    while candidate.start <= up.start + mapping.reach:
        if up in set(mapping.upstream_of(candidate)):
            found.append(candidate)
        candidate = candidate.following()
    return found


def _first_at_or_after(moment: datetime, grain: Grain) -> Partition:
    if grain is Grain.HOUR:
        start = moment.replace(minute=0, second=0, microsecond=0)
    elif grain is Grain.DAY:
        start = datetime.combine(moment.date(), datetime.min.time())
    else:
        start = datetime(moment.year, moment.month, 1)
    partition = Partition(start, grain)
    return partition if partition.start >= moment else partition.following()


@dataclass(frozen=True, slots=True)
class Node:
    """What the edge check needs of a pipeline: its grain and its upstream edges."""

    grain: Grain
    upstream: Sequence[Upstream]


def check_edges(nodes: Mapping[str, Node], *, complete: bool) -> None:
    """Refuse, with one line, an edge between incompatible grains, a cycle, and (``complete``: every module
    is loaded) an upstream nobody registered. Grains and cycles are checked among what is registered so far."""
    for name, node in nodes.items():
        for edge in node.upstream:
            up = nodes.get(edge.pipeline)
            if up is None:
                if complete:
                    raise PipelineDefinitionError(
                        f"pipeline {name!r} declares upstream {edge.pipeline!r}, which is not registered: check "
                        "the name (`backfill pipelines` lists them) and that its module is in BACKFILL_PIPELINE_MODULES"
                    )
                continue
            _check_grains(name, node.grain, edge, up.grain)
    _check_acyclic(nodes)


def _check_grains(name: str, grain: Grain, edge: Upstream, up_grain: Grain) -> None:
    mapping = edge.mapping
    where = f"pipeline {name!r} ({_ADJECTIVE[grain]}) from upstream {edge.pipeline!r} ({_ADJECTIVE[up_grain]})"
    if isinstance(mapping, Identity | LookBack) and up_grain is not grain:
        raise PipelineDefinitionError(
            f"{where}: {mapping.describe()} maps partitions of one grain; use RollUp() from a finer upstream"
        )
    if isinstance(mapping, RollUp) and _FINENESS[up_grain] >= _FINENESS[grain]:
        raise PipelineDefinitionError(
            f"{where}: a roll-up goes from a finer grain to a coarser one (hour → day, hour → month, day → month)"
        )


def _check_acyclic(nodes: Mapping[str, Node]) -> None:
    state: dict[str, int] = {}  # 1: on the path being walked, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for edge in nodes[name].upstream:
            if edge.pipeline not in nodes:
                continue
            if state.get(edge.pipeline) == 1:
                cycle = [*path[path.index(edge.pipeline) :], edge.pipeline]
                raise PipelineDefinitionError(
                    f"pipelines read each other in a cycle ({' reads '.join(cycle)}): a pipeline cannot depend on "
                    "its own output; remove one of these upstream declarations"
                )
            if state.get(edge.pipeline) is None:
                walk(edge.pipeline, [*path, edge.pipeline])
        state[name] = 2

    for name in sorted(nodes):
        if state.get(name) is None:
            walk(name, [name])


def policy_of(edge: Upstream, default: Policy, override: Policy | None = None) -> Policy:
    """The policy of ``edge`` in a run: the run's override, else the edge's own, else the pipeline's default."""
    return override or edge.policy or default


def mark_record(upstream: str, partitions: Sequence[Partition]) -> str:
    """What a STALE event records of its cause (the ledger's ``upstream`` column; the run is the event's)."""
    return json.dumps({"pipeline": upstream, "partitions": [p.key for p in partitions]}, separators=(",", ":"))


def upstream_reason(record: str | None, run_id: str) -> str:
    """A STALE partition's cause, for people: ``silver_orders 2024-01-03, 2024-01-04 (run d835dc0b)``."""
    try:
        cause = json.loads(record or "{}")
        keys = list(cause.get("partitions") or [])
        shown = ", ".join(keys[:3]) + (f" … {keys[-1]} ({len(keys)})" if len(keys) > 3 else "")
        return f"{cause.get('pipeline', '?')} {shown} (run {run_id[:8]})".replace("  ", " ")
    except (ValueError, AttributeError):
        return f"run {run_id[:8]}"
