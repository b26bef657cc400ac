"""Tight input: partition keys and range bounds are written at the pipeline's grain, as UTC calendar
values; every other form is refused with one line that shows what to write, never reinterpreted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.partitions import Grain, parse_bound, parse_partition_key, partitions_between
from prefect_backfill.window import resolve_deadline

H, D, M = Grain.HOUR, Grain.DAY, Grain.MONTH


@pytest.mark.parametrize(
    ("text", "grain", "message"),
    [
        # an hour for a daily or monthly pipeline
        ("2024-01-01T05", D, "'2024-01-01T05' is an hour, but this pipeline's partitions are days: write 2024-01-01"),
        ("2024-01-01T05", M, "'2024-01-01T05' is an hour, but this pipeline's partitions are months: write 2024-01"),
        ("2024-01-01T00", D, "is an hour, but this pipeline's partitions are days: write 2024-01-01"),
        ("2024-01-01T05:30", D, "is an hour, but this pipeline's partitions are days: write 2024-01-01"),
        # a day for a monthly pipeline (even the first of the month: one form per grain)
        ("2024-01-15", M, "'2024-01-15' is a day, but this pipeline's partitions are months: write 2024-01"),
        ("2024-01-01", M, "is a day, but this pipeline's partitions are months: write 2024-01"),
        # a month for a daily or hourly pipeline
        ("2024-01", D, "is a month, but this pipeline's partitions are days: write one day of it, like 2024-01-01"),
        (
            "2024-01",
            H,
            "is a month, but this pipeline's partitions are hours: write one hour of it, like 2024-01-01T00",
        ),
        # offsets and Z: partition keys are UTC calendar values
        (
            "2024-01-01T05+02:00",
            H,
            "has a time-zone offset: partition keys are UTC calendar values: write 2024-01-01T05",
        ),
        ("2024-01-01T05Z", H, "has a time-zone offset: partition keys are UTC calendar values: write 2024-01-01T05"),
        ("2024-01-01T00:00:00+00:00", D, "time-zone offset: partition keys are UTC calendar values: write 2024-01-01"),
        ("2024-01-01Z", D, "has a time-zone offset: partition keys are UTC calendar values: write 2024-01-01"),
        ("2024-01-01T05-0500", D, "has a time-zone offset"),
        # other ISO spellings that fromisoformat would take
        ("20240101", D, "'20240101' is not a valid date: write 2024-01-01 (with dashes)"),
        ("2024-W01-1", D, "'2024-W01-1' is an ISO week date, which is not accepted: write a date like 2024-01-03"),
        ("2024W011", H, "is an ISO week date"),
        # minutes and seconds on an hourly pipeline
        (
            "2024-01-01T05:30",
            H,
            "'2024-01-01T05:30' has minutes or seconds, but partitions are whole hours: write 2024-01-01T05",
        ),
        ("2024-01-01T05:00:00", H, "has minutes or seconds, but partitions are whole hours: write 2024-01-01T05"),
        ("2024-01-01 05", H, "'2024-01-01 05' is not an hour key: write 2024-01-01T05"),
        # not dates at all, or not in the calendar
        ("2024-1-5", D, "'2024-1-5' is not a valid date: use YYYY-MM-DD, like 2024-01-03"),
        ("yesterday", M, "'yesterday' is not a valid date: use YYYY-MM, like 2024-01"),
        ("2024-02-30", D, "'2024-02-30' is not a valid date: no such day in the calendar"),
        ("2024-13", M, "'2024-13' is not a valid date: no such month in the calendar"),
        ("2024-01-01T24", H, "'2024-01-01T24' is not a valid date: no such hour in the calendar"),
    ],
)
def test_bounds_in_any_other_form_are_refused_with_what_to_write(text: str, grain: Grain, message: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        parse_bound(text, grain, name="start")
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"start {text!r} ")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("key", "grain", "message"),
    [
        (
            "2024-01-01T05",
            D,
            "partition '2024-01-01T05' is an hour, but this pipeline's partitions are days: write it like 2024-01-01",
        ),
        (
            "2024-01-15",
            M,
            "partition '2024-01-15' is a day, but this pipeline's partitions are months: write it like 2024-01",
        ),
        (
            "2024-01-03",
            H,
            "partition '2024-01-03' is a day, but this pipeline's partitions are hours: "
            "write it like 2024-01-03T00 (--start/--end take whole days)",
        ),
        ("2024-01-01T05Z", H, "partition keys are UTC calendar values: write it like 2024-01-01T05"),
        ("2024-01-01+01:00", D, "partition keys are UTC calendar values: write it like 2024-01-01"),
        ("20240101", D, "write it like 2024-01-01 (with dashes)"),
        ("2024-W01-1", D, "is an ISO week date"),
        ("2024-01-01T05:30", H, "has minutes or seconds"),
        ("2024-1-5", D, "partition '2024-1-5' is not a day partition key: write it like 2024-01-03"),
        ("x", H, "partition 'x' is not an hour partition key: write it like 2024-01-03T05"),
    ],
)
def test_partition_keys_in_any_other_form_are_refused(key: str, grain: Grain, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=r"^partition ") as refused:
        parse_partition_key(key, grain)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("start", "end", "grain", "first", "last", "count"),
    [
        ("2024-01-01", "2024-01-31", D, "2024-01-01", "2024-01-31", 31),
        ("2024-01", "2024-03", M, "2024-01", "2024-03", 3),
        ("2024-01-01T22", "2024-01-02T01", H, "2024-01-01T22", "2024-01-02T01", 4),
        # A plain date stays allowed as a bound of an hourly range: its first hour, or its last one.
        ("2024-01-30", "2024-01-31", H, "2024-01-30T00", "2024-01-31T23", 48),
        ("2024-01-31T20", "2024-01-31", H, "2024-01-31T20", "2024-01-31T23", 4),
        (" 2024-01-01 ", "2024-01-02", D, "2024-01-01", "2024-01-02", 2),
    ],
)
def test_the_accepted_forms(start: str, end: str, grain: Grain, first: str, last: str, count: int) -> None:
    parts = partitions_between(start, end, grain)
    assert (parts[0].key, parts[-1].key, len(parts)) == (first, last, count)


def test_dates_and_datetimes_from_code_are_still_truncated_to_the_grain() -> None:
    assert parse_bound(datetime(2024, 1, 15, 7, 30), M) == datetime(2024, 1, 1)
    assert parse_bound(datetime(2024, 1, 15, 7, 30, tzinfo=UTC), H) == datetime(2024, 1, 15, 7)


NOW = datetime(2024, 7, 1, 20, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window_end", "timezone"),
    [
        ("2024-07-01T20:30:00+00:00", "UTC"),  # exactly now
        ("2024-07-01T06:00", "Europe/Amsterdam"),  # this morning, local time
        ("2024-06-30T23:00Z", "Europe/Amsterdam"),
    ],
)
def test_a_window_end_instant_in_the_past_is_refused(window_end: str, timezone: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        resolve_deadline(window_end, timezone, NOW)
    assert str(refused.value).startswith(f"window_end {window_end!r} has already passed (now 2024-07-01T")
    assert str(refused.value).endswith(": give a later time or a time of day like 06:00")
    # A run already under way may re-read its own request after the window closed.
    assert resolve_deadline(window_end, timezone, NOW, past_ok=True) is not None


def test_a_window_end_ahead_and_times_of_day_are_accepted() -> None:
    assert resolve_deadline("2024-07-01T20:31", "UTC", NOW) == NOW + timedelta(minutes=1)
    # A time of day is always the next one, so never in the past: 20:00 is tomorrow's.
    assert resolve_deadline("20:00", "UTC", NOW) == datetime(2024, 7, 2, 20, 0, tzinfo=UTC)
    assert resolve_deadline("20:30", "UTC", NOW) == datetime(2024, 7, 2, 20, 30, tzinfo=UTC)


def test_a_time_of_day_with_an_offset_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match=r"'06:00\+02:00' is a time of day with an offset: write 06:00"):
        resolve_deadline("06:00+02:00", "UTC", NOW)
