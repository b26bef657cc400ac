"""Night-only windows: when must a backfill stop taking new partitions?

A window end is either a time of day (``"06:00"``: the next 06:00 after the run starts, in the given
timezone) or an absolute ISO timestamp. Pure, with the clock passed in, so tests close the window
mid-run by moving a fake clock; the flow reads the real one through :data:`clock`.
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


def resolve_deadline(window_end: str | None, timezone: str, now: datetime) -> datetime | None:
    """The instant (UTC) after which no new partition starts, or None for no window."""
    if window_end is None or not str(window_end).strip():
        return None
    zone = _zone(timezone)
    text = str(window_end).strip()
    try:
        at = time.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidRequestError(
                f"window_end {text!r} is neither a time of day (06:00) nor a timestamp (2024-07-01T06:00:00+02:00)"
            ) from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    local_now = now.astimezone(zone)
    end = datetime.combine(local_now.date(), at.replace(tzinfo=None), tzinfo=zone)
    if end <= local_now:
        end += timedelta(days=1)
    return end.astimezone(UTC)
