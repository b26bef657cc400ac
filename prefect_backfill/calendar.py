"""A calendar of partition status: one month grid per month, each day marked by its status.

Pure: the grid is built from partitions and the ledger's states; two renderers draw it (Markdown for
the Prefect UI artifact, Rich for the terminal). Hourly partitions are folded into their day (the
day shows its worst hour); monthly partitions get one row per year.
"""

from __future__ import annotations

import calendar as _calendar
import enum
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.planning import PartitionState, Status

__all__ = ["Cell", "Grid", "build_grid", "cell_of", "render_markdown"]


class Cell(enum.Enum):
    """What a day shows. Ordered from worst to best: a folded day shows its worst partition."""

    FAILED = ("❌", "failed")
    DRIFTED = ("🟥", "drifted (the table differs from the ledger)")
    RUNNING = ("⏳", "running")
    PENDING = ("🕓", "pending")
    UNDONE = ("⏪", "undone")
    STALE = ("🟨", "stale (older version)")
    UPSTREAM = ("🟧", "stale (upstream changed)")
    MISSING = ("⬜", "never run")
    COMPLETE = ("✅", "complete")

    @property
    def mark(self) -> str:
        return self.value[0]

    @property
    def label(self) -> str:
        return self.value[1]


_SEVERITY = {cell: rank for rank, cell in enumerate(Cell)}


def cell_of(state: PartitionState | None, fingerprint: str, drifted: bool = False) -> Cell:
    """A partition's cell; ``drifted``: the ledger says COMPLETE but the table no longer holds what it
    says was written (see :mod:`prefect_backfill.audit`)."""
    if state is None:
        return Cell.MISSING
    if state.status is Status.COMPLETE:
        if drifted:
            return Cell.DRIFTED
        return Cell.COMPLETE if state.fingerprint == fingerprint else Cell.STALE
    return {
        Status.FAILED: Cell.FAILED,
        Status.RUNNING: Cell.RUNNING,
        Status.PENDING: Cell.PENDING,
        Status.UNDONE: Cell.UNDONE,
        Status.STALE: Cell.UPSTREAM,
    }[state.status]


@dataclass(frozen=True)
class Grid:
    """``months``: (title, weeks) with each week seven (day number, cell) or None outside the range."""

    grain: Grain
    months: tuple[tuple[str, tuple[tuple[tuple[int, Cell] | None, ...], ...]], ...]
    totals: Mapping[Cell, int]


def _fold(
    partitions: Sequence[Partition],
    states: Mapping[str, PartitionState],
    fingerprint: str,
    drifted: Collection[str],
) -> dict[date, Cell]:
    days: dict[date, Cell] = {}
    for part in partitions:
        cell = cell_of(states.get(part.key), fingerprint, part.key in drifted)
        day = part.start.date()
        held = days.get(day)
        if held is None or _SEVERITY[cell] < _SEVERITY[held]:
            days[day] = cell
    return days


def build_grid(
    partitions: Sequence[Partition],
    states: Mapping[str, PartitionState],
    fingerprint: str,
    drifted: Collection[str] = (),
) -> Grid:
    """The grid of ``partitions``; ``drifted``: keys whose table differs from the ledger (their own cell)."""
    totals = Counter(cell_of(states.get(p.key), fingerprint, p.key in drifted) for p in partitions)
    if not partitions:
        return Grid(Grain.DAY, (), totals)
    grain = partitions[0].grain
    if grain is Grain.MONTH:
        by_year: dict[int, list[tuple[int, Cell] | None]] = {}
        for part in partitions:
            row = by_year.setdefault(part.start.year, [None] * 12)
            cell = cell_of(states.get(part.key), fingerprint, part.key in drifted)
            row[part.start.month - 1] = (part.start.month, cell)
        months = tuple((str(year), (tuple(row),)) for year, row in sorted(by_year.items()))
        return Grid(grain, months, totals)
    days = _fold(partitions, states, fingerprint, drifted)
    first, last = min(days), max(days)
    out = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        weeks = []
        for week in _calendar.Calendar(firstweekday=0).monthdayscalendar(year, month):
            weeks.append(
                tuple((d, days[date(year, month, d)]) if d and date(year, month, d) in days else None for d in week)
            )
        out.append((f"{_calendar.month_name[month]} {year}", tuple(weeks)))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return Grid(grain, tuple(out), totals)


def legend(totals: Mapping[Cell, int]) -> str:
    return " · ".join(f"{cell.mark} {cell.label}: {totals.get(cell, 0)}" for cell in Cell)


def _day(cell: tuple[int, Cell] | None) -> str:
    return f"{cell[0]} {cell[1].mark}" if cell else " "


def render_markdown(grid: Grid, title: str) -> str:
    lines = [f"# {title}", "", legend(grid.totals), ""]
    if grid.grain is Grain.MONTH:
        lines += ["| year | " + " | ".join(_calendar.month_abbr[m] for m in range(1, 13)) + " |"]
        lines += ["|---" * 13 + "|"]
        for year, (row,) in grid.months:
            lines.append(f"| {year} | " + " | ".join(c[1].mark if c else " " for c in row) + " |")
        return "\n".join(lines)
    if grid.grain is Grain.HOUR:
        lines += ["Hourly partitions: each day shows its worst hour.", ""]
    for title_month, weeks in grid.months:
        lines += [f"### {title_month}", "", "| Mo | Tu | We | Th | Fr | Sa | Su |", "|---|---|---|---|---|---|---|"]
        for week in weeks:
            lines.append("| " + " | ".join(_day(cell) for cell in week) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
