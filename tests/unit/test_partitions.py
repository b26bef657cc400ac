from datetime import date, datetime

import pytest

from prefect_backfill.errors import InvalidRequestError
from prefect_backfill.partitions import Grain, parse_partition_key, partitions_between


def test_day_range_is_inclusive_at_both_ends() -> None:
    parts = partitions_between("2024-01-01", "2024-06-30", Grain.DAY)
    assert len(parts) == 182
    assert parts[0].key == "2024-01-01" and parts[-1].key == "2024-06-30"
    assert parts[0].value == date(2024, 1, 1)


def test_single_day_range() -> None:
    assert [p.key for p in partitions_between("2024-02-29", "2024-02-29", Grain.DAY)] == ["2024-02-29"]


def test_hour_range_with_bare_end_date_includes_the_whole_last_day() -> None:
    parts = partitions_between("2024-01-01", "2024-01-02", Grain.HOUR)
    assert len(parts) == 48
    assert parts[-1].key == "2024-01-02T23"
    assert parts[5].value == datetime(2024, 1, 1, 5)


def test_hour_range_with_explicit_hours() -> None:
    parts = partitions_between("2024-01-01T22", "2024-01-02T01", Grain.HOUR)
    assert [p.key for p in parts] == ["2024-01-01T22", "2024-01-01T23", "2024-01-02T00", "2024-01-02T01"]


def test_month_range_crosses_years() -> None:
    parts = partitions_between("2023-11", "2024-02", Grain.MONTH)
    assert [p.key for p in parts] == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert parts[2].value == date(2024, 1, 1)


def test_five_years_of_hours_is_cheap_and_exact() -> None:
    parts = partitions_between("2019-01-01", "2023-12-31", Grain.HOUR)
    assert len(parts) == 43_824  # 5 years incl. one leap day, 24 per day


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2024-13-01", "2024-01-02", "start '2024-13-01' is not a valid date"),
        ("2024-01-01", "yesterday", "end 'yesterday' is not a valid date"),
        ("2024-02-01", "2024-01-01", "end 2024-01-01 is before start 2024-02-01"),
    ],
)
def test_bad_ranges_say_what_is_wrong(start: str, end: str, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        partitions_between(start, end, Grain.DAY)


@pytest.mark.parametrize("grain", list(Grain))
def test_keys_round_trip(grain: Grain) -> None:
    start, end = ("2023-11", "2024-03") if grain is Grain.MONTH else ("2024-01-30", "2024-03-02")
    for part in partitions_between(start, end, grain)[:50]:
        assert parse_partition_key(part.key, grain) == part


def test_bad_partition_key() -> None:
    with pytest.raises(InvalidRequestError, match="write it like 2024-01-03T05"):
        parse_partition_key("2024-01-03 05h", Grain.HOUR)
