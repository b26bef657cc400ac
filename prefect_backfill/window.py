"""Night-only windows: when must a backfill stop taking new partitions?

A window end is either a time of day (``"06:00"``: the next 06:00 after the run starts, in the given
timezone, so never in the past) or an absolute ISO timestamp, which must still be ahead: an instant
that has already passed is refused (a run that may start nothing is a typo, not a request). Pure,
with the clock passed in, so tests close the window mid-run by moving a fake clock; the flow reads the
real one through :data:`clock`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect_backfill.errors import InvalidRequestError

__all__ = ["Clock", "clock", "partitions_that_fit", "resolve_deadline", "system_clock"]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


#: The clock the flow uses; tests replace it to close a window mid-run.
clock: Clock = system_clock


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidRequestError(
            f"unknown timezone {name!r}: use an IANA name such as UTC or Europe/Amsterdam"
        ) from None


def resolve_deadline(window_end: str | None, timezone: str, now: datetime, *, past_ok: bool = False) -> datetime | None:
    """The instant (UTC) after which no new partition starts, or None for no window.

    An absolute ``window_end`` at or before ``now`` is an :class:`InvalidRequestError` unless
    ``past_ok`` (a run already under way re-reading its own request: the window closed meanwhile).
    """
    if window_end is None or not str(window_end).strip():
        return None
    zone = _zone(timezone)
    text = str(window_end).strip()
    try:
        at: time | None = time.fromisoformat(text)
    except ValueError:
        at = None
    if at is None:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRequestError(
                f"window_end {text!r} is neither a time of day (06:00) nor a timestamp (2024-07-01T06:00:00+02:00)"
            ) from None
        deadline = (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
        if deadline <= now and not past_ok:
            raise InvalidRequestError(
                f"window_end {text!r} has already passed (now {now.astimezone(zone):%Y-%m-%dT%H:%M} {zone.key}): "
                "give a later time or a time of day like 06:00"
            )
        return deadline
    if at.tzinfo is not None:
        raise InvalidRequestError(
            f"window_end {text!r} is a time of day with an offset: write {at.replace(tzinfo=None):%H:%M} "
            "and give the zone with --timezone (timezone=)"
        )
    local_now = now.astimezone(zone)
    end = datetime.combine(local_now.date(), at.replace(tzinfo=None), tzinfo=zone)
    if end <= local_now:
        end += timedelta(days=1)
    return end.astimezone(UTC)


def partitions_that_fit(size: int, seconds_left: float | None, seconds_per_partition: Sequence[float]) -> int:
    """How many of a chunk's ``size`` partitions can finish in ``seconds_left`` (None: no window), judged
    by the median time per partition of earlier ones (the ledger's history, then this run's chunks).

    Without history the whole chunk starts: refusing to start anything would make a first night-time
    run do nothing forever. A chunk's time is a fixed part plus a part per byte, so the per-partition
    median of large chunks is optimistic for a shrunk one; the window's grace period absorbs that, and
    the hard stop after it cancels what still runs (its partitions go back to PENDING)."""
    if seconds_left is None:
        return size
    if seconds_left <= 0:
        return 0
    if not seconds_per_partition:
        return size
    each = statistics.median(seconds_per_partition)
    return size if each <= 0 else max(0, min(size, int(seconds_left / each)))
