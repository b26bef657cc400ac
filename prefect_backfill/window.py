"""Night-only windows: when must a backfill stop taking new partitions?

A window end is either a time of day (``"06:00"``: the next 06:00 after the run starts, in the given
timezone, so never in the past) or an absolute ISO timestamp, which must still be ahead: an instant
that has already passed is refused (a run that may start nothing is a typo, not a request). Pure,
with the clock passed in, so tests close the window mid-run by moving a fake clock; the flow reads the
real one through :data:`clock`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prefect_backfill.errors import InvalidRequestError

__all__ = ["Clock", "clock", "resolve_deadline", "system_clock"]

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
