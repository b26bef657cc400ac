"""Partitions of a time range, by grain. Pure: no Spark, no Prefect.

Convention, everywhere in this package: a range is given by *inclusive* ``start`` and ``end`` bounds,
each truncated to the grain. ``--end 2024-01-31`` on an hourly pipeline therefore includes every hour
of 31 January, and ``--start 2024-01-15`` on a monthly pipeline starts with January.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from prefect_backfill.errors import InvalidRequestError

__all__ = ["Grain", "Partition", "parse_bound", "parse_partition_key", "partitions_between"]


class Grain(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


_KEY_FORMATS = {Grain.HOUR: "%Y-%m-%dT%H", Grain.DAY: "%Y-%m-%d", Grain.MONTH: "%Y-%m"}
_EXAMPLES = {Grain.HOUR: "2024-01-03T05", Grain.DAY: "2024-01-03", Grain.MONTH: "2024-01"}


@dataclass(frozen=True, order=True, slots=True)
class Partition:
    """One partition: the start instant of its interval (naive, UTC) and its grain."""

    start: datetime
    grain: Grain

    @property
    def key(self) -> str:
        """Stable, sortable, human-readable name: ``2024-01-03``, ``2024-01-03T05``, ``2024-01``."""
        return self.start.strftime(_KEY_FORMATS[self.grain])

    @property
    def value(self) -> date | datetime:
        """The partition column's value: a date for day and month grains, a timestamp for hours."""
        return self.start if self.grain is Grain.HOUR else self.start.date()

    def __str__(self) -> str:
        return self.key


def _truncate(moment: datetime, grain: Grain) -> datetime:
    if grain is Grain.HOUR:
        return moment.replace(minute=0, second=0, microsecond=0)
    if grain is Grain.DAY:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _step(moment: datetime, grain: Grain) -> datetime:
    if grain is Grain.HOUR:
        return moment + timedelta(hours=1)
    if grain is Grain.DAY:
        return moment + timedelta(days=1)
    return (
        moment.replace(year=moment.year + 1, month=1) if moment.month == 12 else moment.replace(month=moment.month + 1)
    )


def parse_bound(text: str | date | datetime, grain: Grain, *, end: bool = False, name: str = "date") -> datetime:
    """Parse a range bound (a date, or a date and hour) and truncate it to the grain.

    A bare date as the *end* of an hourly range means its last hour, so that ranges stay inclusive.
    """
    if isinstance(text, datetime):
        moment, has_time = text.replace(tzinfo=None), True
    elif isinstance(text, date):
        moment, has_time = datetime(text.year, text.month, text.day), False
    else:
        raw = str(text).strip()
        try:
            if grain is Grain.MONTH and len(raw) == 7:
                moment, has_time = datetime.strptime(raw, "%Y-%m"), False
            else:
                moment = datetime.fromisoformat(raw)
                has_time = "T" in raw or " " in raw
        except ValueError:
            raise InvalidRequestError(
                f"{name} {raw!r} is not a valid date: use YYYY-MM-DD (or {_EXAMPLES[grain]} for this pipeline)"
            ) from None
        if moment.tzinfo is not None:
            moment = (moment - moment.utcoffset()).replace(tzinfo=None)  # type: ignore[operator]
    if end and grain is Grain.HOUR and not has_time:
        moment = moment.replace(hour=23)
    return _truncate(moment, grain)


def partitions_between(start: str | date | datetime, end: str | date | datetime, grain: Grain) -> list[Partition]:
    """Every partition from ``start`` to ``end``, both inclusive, oldest first."""
    first = parse_bound(start, grain, name="start")
    last = parse_bound(end, grain, end=True, name="end")
    if last < first:
        raise InvalidRequestError(
            f"end {last.strftime(_KEY_FORMATS[grain])} is before start {first.strftime(_KEY_FORMATS[grain])}: "
            "swap them (both bounds are inclusive)"
        )
    out: list[Partition] = []
    moment = first
    while moment <= last:
        out.append(Partition(moment, grain))
        moment = _step(moment, grain)
    return out


def parse_partition_key(key: str, grain: Grain) -> Partition:
    """The inverse of :attr:`Partition.key`; raises a one-line error on anything else."""
    try:
        moment = datetime.strptime(key.strip(), _KEY_FORMATS[grain])
    except ValueError:
        raise InvalidRequestError(
            f"partition {key!r} is not a {grain.value} partition key: write it like {_EXAMPLES[grain]}"
        ) from None
    return Partition(moment, grain)
