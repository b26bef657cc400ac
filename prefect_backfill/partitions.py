"""Partitions of a time range, by grain. Pure: no Spark, no Prefect.

Convention, everywhere in this package: a range is given by *inclusive* ``start`` and ``end`` bounds,
written at the pipeline's grain: ``2024-01-03`` for days, ``2024-01-03T05`` for hours, ``2024-01`` for
months. One coarser form is allowed because it cannot be misread: a date as a bound of an hourly
range means its first (``--start``) or last (``--end``) hour, so ``--end 2024-01-31`` includes every
hour of 31 January. Every other form is refused with a one-line error that shows what to write: a
value finer than the grain (``2024-01-15`` for a monthly pipeline, an hour for a daily one, minutes
for an hourly one), a month for a daily or hourly pipeline, a time-zone offset or ``Z`` (keys are UTC
calendar values), and other ISO spellings (``20240101``, ``2024-W01-1``). Nothing is silently
truncated or shifted.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

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

    def following(self) -> Partition:
        """The next partition of the same grain."""
        return Partition(_step(self.start, self.grain), self.grain)

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


# The forms a user may write, one per grain, checked on the text itself: Python 3.11's
# ``fromisoformat`` also takes 20240101, 2024-W01-1, minutes and offsets, which would be silently
# reinterpreted (truncated, shifted to UTC) instead of refused.
_FORMS = {
    Grain.MONTH: re.compile(r"\d{4}-\d{2}", re.ASCII),
    Grain.DAY: re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII),
    Grain.HOUR: re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}", re.ASCII),
}
_PARSE = {Grain.MONTH: "%Y-%m", Grain.DAY: "%Y-%m-%d", Grain.HOUR: "%Y-%m-%dT%H"}
_NOUN = {Grain.HOUR: "hour", Grain.DAY: "day", Grain.MONTH: "month"}
_PREFIX = re.compile(r"(\d{4})-?(\d{2})(?:-?(\d{2})(?:[T ](\d{2}))?)?")
_WITH_TIME = re.compile(r"\d{4}-?\d{2}-?\d{2}[T ]\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d+)?)?)?")
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)


def _written_at(text: str) -> Grain | None:
    return next((grain for grain, form in _FORMS.items() if form.fullmatch(text)), None)


def _suggest(text: str, grain: Grain) -> str:
    """``text`` rewritten at ``grain`` as far as it says (for the "write …" part of an error)."""
    m = _PREFIX.match(text)
    if m is None:
        return _EXAMPLES[grain]
    year, month, day, hour = m.groups()
    if grain is Grain.MONTH:
        return f"{year}-{month}"
    if day is None:
        return f"{year}-{month}-01" + ("T00" if grain is Grain.HOUR else "")
    return f"{year}-{month}-{day}" + (f"T{hour or '00'}" if grain is Grain.HOUR else "")


def _refuse(text: str, grain: Grain, label: str, *, key: bool) -> InvalidRequestError:
    """The one-line error for ``text`` that is not written in an accepted form for ``grain``."""
    write = f"write {'it like ' if key else ''}{_suggest(text, grain)}"
    if (
        (text[:1].isdigit() and text.upper().endswith("Z"))
        or (_OFFSET.search(text) and _WITH_TIME.fullmatch(_OFFSET.sub("", text)))
        or re.fullmatch(r"\d{4}-\d{2}-\d{2}[+-]\d{2}:\d{2}", text)
    ):
        return InvalidRequestError(f"{label} has a time-zone offset: partition keys are UTC calendar values: {write}")
    if re.fullmatch(r"\d{8}(T\d{2})?", text):
        return InvalidRequestError(f"{label} is not a valid date: {write} (with dashes)")
    if re.search(r"\d{4}-?W\d", text, re.IGNORECASE):
        return InvalidRequestError(
            f"{label} is an ISO week date, which is not accepted: write a date like {_EXAMPLES[grain]}"
        )
    written = _written_at(text)
    if written is None and _WITH_TIME.fullmatch(text):
        if grain is not Grain.HOUR:
            written = Grain.HOUR
        elif ":" in text:
            return InvalidRequestError(f"{label} has minutes or seconds, but partitions are whole hours: {write}")
        else:
            return InvalidRequestError(f"{label} is not an hour key: {write}")
    if written is not None:
        article = "an" if written is Grain.HOUR else "a"
        if written is Grain.MONTH:  # coarser than the grain: which of its days or hours is meant?
            write = f"write one {_NOUN[grain]} of it, like {_suggest(text, grain)}"
        also = " (--start/--end take whole days)" if key and grain is Grain.HOUR else ""
        return InvalidRequestError(
            f"{label} is {article} {_NOUN[written]}, but this pipeline's partitions are {_NOUN[grain]}s: {write}{also}"
        )
    if key:
        article = "an" if grain is Grain.HOUR else "a"
        return InvalidRequestError(
            f"{label} is not {article} {grain.value} partition key: write it like {_EXAMPLES[grain]}"
        )
    form = {
        Grain.DAY: "use YYYY-MM-DD, like 2024-01-03",
        Grain.HOUR: "use YYYY-MM-DDTHH, like 2024-01-03T05, or a date",
        Grain.MONTH: "use YYYY-MM, like 2024-01",
    }[grain]
    return InvalidRequestError(f"{label} is not a valid date: {form}")


def _parse_text(text: str, grain: Grain, label: str, *, key: bool) -> tuple[datetime, Grain]:
    """Parse ``text`` written at ``grain`` (a bound of an hourly range may also be a date)."""
    written = _written_at(text)
    if written is not grain and not (written is Grain.DAY and grain is Grain.HOUR and not key):
        raise _refuse(text, grain, label, key=key)
    assert written is not None
    try:
        return datetime.strptime(text, _PARSE[written]), written
    except ValueError:
        raise InvalidRequestError(f"{label} is not a valid date: no such {_NOUN[written]} in the calendar") from None


def parse_bound(text: str | date | datetime, grain: Grain, *, end: bool = False, name: str = "date") -> datetime:
    """Parse a range bound written at the pipeline's grain (see the module's docstring).

    A bare date as the *end* of an hourly range means its last hour, so that ranges stay inclusive.
    ``date`` and ``datetime`` values (from code, not from users) are truncated to the grain.
    """
    if isinstance(text, datetime):
        moment = text if text.tzinfo is None else text.astimezone(UTC)
        moment, has_time = moment.replace(tzinfo=None), True
    elif isinstance(text, date):
        moment, has_time = datetime(text.year, text.month, text.day), False
    else:
        raw = str(text).strip()
        moment, written = _parse_text(raw, grain, f"{name} {raw!r}", key=False)
        has_time = written is Grain.HOUR
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
    raw = key.strip()
    moment, _ = _parse_text(raw, grain, f"partition {raw!r}", key=True)
    return Partition(moment, grain)
