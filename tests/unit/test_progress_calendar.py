from datetime import datetime

from prefect_backfill.calendar import Cell, build_grid, cell_of, render_markdown
from prefect_backfill.eta import estimate, format_duration, wave_estimate
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.planning import PartitionState, Status

FP = "2:abc"


def st(key: str, status: Status, fingerprint: str = FP) -> PartitionState:
    return PartitionState(key, status, fingerprint, fingerprint[0], "r", datetime(2024, 7, 1))


def test_eta_counts_waves_of_concurrent_partitions() -> None:
    eta = estimate(remaining=10, durations=[2.0, 4.0, 3.0], concurrency=4)
    assert eta.seconds == 3 * 3.0  # ceil(10 / 4) waves of the median duration
    assert "this run" in eta.basis


def test_eta_falls_back_to_history_then_to_unknown() -> None:
    assert estimate(5, [], 1, history=[10.0]).seconds == 50.0
    unknown = estimate(5, [], 1)
    assert unknown.seconds is None and "ETA unknown" in str(unknown)
    assert str(estimate(0, [], 1)) == "done"


def test_durations_read_like_a_person_would_write_them() -> None:
    assert [format_duration(s) for s in (42, 425, 11_520)] == ["42s", "7m 05s", "3h 12m"]


def test_cells_distinguish_stale_from_complete() -> None:
    assert cell_of(st("d", Status.COMPLETE), FP) is Cell.COMPLETE
    assert cell_of(st("d", Status.COMPLETE, "1:old"), FP) is Cell.STALE
    assert cell_of(None, FP) is Cell.MISSING
    assert cell_of(st("d", Status.RUNNING), FP) is Cell.RUNNING
    assert cell_of(st("d", Status.UNDONE), FP) is Cell.UNDONE  # a cell of its own, not "never run"
    grid = build_grid(
        partitions_between("2024-01-01", "2024-01-02", Grain.DAY), {"2024-01-01": st("d", Status.UNDONE)}, FP
    )
    assert "1 ⏪" in render_markdown(grid, "t") and "⏪ undone: 1" in render_markdown(grid, "t")


def test_day_calendar_has_a_grid_per_month_with_marks_legend_and_totals() -> None:
    parts = partitions_between("2024-01-30", "2024-02-02", Grain.DAY)
    states = {
        "2024-01-30": st("2024-01-30", Status.COMPLETE),
        "2024-01-31": st("2024-01-31", Status.FAILED),
        "2024-02-01": st("2024-02-01", Status.COMPLETE, "1:old"),
    }
    grid = build_grid(parts, states, FP)
    assert [title for title, _ in grid.months] == ["January 2024", "February 2024"]
    md = render_markdown(grid, "orders")
    assert "| 29 " not in md  # days outside the range stay blank
    assert "30 ✅" in md and "31 ❌" in md and "1 🟨" in md and "2 ⬜" in md
    assert "✅ complete: 1" in md and "❌ failed: 1" in md and "🟨 stale (older version): 1" in md
    assert "| Mo | Tu | We | Th | Fr | Sa | Su |" in md


def test_hourly_days_show_their_worst_hour_and_months_fold_by_year() -> None:
    hours = partitions_between("2024-03-01T00", "2024-03-01T03", Grain.HOUR)
    states = {p.key: st(p.key, Status.COMPLETE) for p in hours}
    states["2024-03-01T02"] = st("2024-03-01T02", Status.FAILED)
    grid = build_grid(hours, states, FP)
    assert grid.months[0][1][0][4] == (1, Cell.FAILED)  # 1 March 2024 was a Friday
    assert grid.totals[Cell.COMPLETE] == 3

    months = partitions_between("2023-11", "2024-02", Grain.MONTH)
    md = render_markdown(build_grid(months, {}, FP), "monthly")
    assert "| 2023 |" in md and "| 2024 |" in md


def test_window_end_is_the_next_time_of_day_in_the_timezone() -> None:
    from datetime import UTC

    from prefect_backfill.window import resolve_deadline

    late_evening = datetime(2024, 7, 1, 20, 30, tzinfo=UTC)  # 22:30 in Amsterdam (summer time)
    assert resolve_deadline("06:00", "Europe/Amsterdam", late_evening) == datetime(2024, 7, 2, 4, 0, tzinfo=UTC)
    early_morning = datetime(2024, 7, 2, 2, 0, tzinfo=UTC)  # 04:00 local: today's 06:00 is still ahead
    assert resolve_deadline("06:00", "Europe/Amsterdam", early_morning) == datetime(2024, 7, 2, 4, 0, tzinfo=UTC)
    assert resolve_deadline("2024-07-02T06:00:00+02:00", "UTC", late_evening) == datetime(2024, 7, 2, 4, 0, tzinfo=UTC)
    assert resolve_deadline(None, "UTC", late_evening) is None


def test_bad_windows_say_how_to_fix_them() -> None:
    from datetime import UTC

    import pytest

    from prefect_backfill.errors import InvalidRequestError
    from prefect_backfill.window import resolve_deadline

    now = datetime(2024, 7, 1, tzinfo=UTC)
    with pytest.raises(InvalidRequestError, match="unknown timezone 'Mars/Olympus'"):
        resolve_deadline("06:00", "Mars/Olympus", now)
    with pytest.raises(InvalidRequestError, match="neither a time of day"):
        resolve_deadline("dawn", "UTC", now)


def test_a_plan_estimate_adds_up_each_waves_longest_chunk() -> None:
    """`backfill plan`'s estimate: chunks of 3, 1, 2, 2 partitions two at a time, 10 s a partition."""
    assert wave_estimate([3, 1, 2, 2], 2, 10.0) == 30.0 + 20.0
    assert wave_estimate([3, 1], 2, None) is None  # no history, no estimate
    assert wave_estimate([], 2, 10.0) == 0
