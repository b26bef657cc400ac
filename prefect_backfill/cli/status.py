"""``backfill status``: the ledger's view of a pipeline, its live runs, text or JSON."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from prefect_backfill.cli.app import AsJson, _say, app, console
from prefect_backfill.planning import Status


@app.command()
def status(
    pipeline: str,
    start: Annotated[str | None, typer.Option("--start")] = None,
    end: Annotated[str | None, typer.Option("--end")] = None,
    as_json: AsJson = False,
) -> None:
    """Counts per status, failed partitions with errors, stale and drifted partitions, a calendar and the
    ETA of a running backfill. Reads the ledger and the target's Delta log: no Spark for a path target,
    no Prefect server."""
    from prefect_backfill.calendar import build_grid
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.status_report import status_report

    report = status_report(get_pipeline(pipeline), start, end)
    if as_json:  # the same keys whatever is recorded, so scripts need no special case
        print(json.dumps(report.to_dict(), indent=2))
        return
    if not report.partitions:
        console.print(f"{pipeline}: nothing recorded yet (ledger {report.ledger_path})")
        return
    partitions, states, drifted = report.partitions, report.states, report.drifted
    table = Table("status", "partitions", title=f"{pipeline} {partitions[0].key} … {partitions[-1].key}")
    for st in Status:
        table.add_row(st.value, str(report.counts.get(st.value, 0)))
    table.add_row("never run", str(report.never_run))
    table.add_row("stale (older version)", str(len(report.stale)))
    table.add_row("drifted (table ≠ ledger)", str(len(drifted)) if report.drift is not None else "not checked")
    console.print(table)
    console.print(f"current version {report.fingerprint}", highlight=False)
    for lease in report.live.values():
        of = f" of pipeline {lease.pipeline}" if lease.pipeline != pipeline else ""
        console.print(f"running backfill: {lease.describe()}{of}", highlight=False, soft_wrap=True)
    if report.eta is not None:
        console.print(
            f"  {report.in_flight} partitions claimed by live runs: {report.eta}", highlight=False, soft_wrap=True
        )
    interrupted = report.interrupted
    if interrupted:
        console.print(
            f"[yellow]INTERRUPTED[/] {len(interrupted)} partition(s) left PENDING/RUNNING by runs that are no longer "
            f"alive ({interrupted[0]} …): the next `backfill run` takes them over",
            highlight=False,
            soft_wrap=True,
        )
    _print_calendar(build_grid(list(partitions), dict(states), report.fingerprint, drifted))
    if report.drift_unknown:
        _say(f"drift not checked: {report.drift_unknown}", style="yellow")
    for key, finding in drifted.items():
        _say(f"DRIFTED {key}: {finding.detail}", style="red")
    if report.drift is not None and report.drift.repair_command:
        _say(f"  repair them with: {report.drift.repair_command} (see backfill audit {pipeline})")
    stale, undone = report.stale, report.undone
    for key, error in report.failed:
        console.print(f"[red]FAILED[/] {key}: {error}", highlight=False, soft_wrap=True)
    if stale:
        shown = ", ".join(stale[:10]) + (" …" if len(stale) > 10 else "")
        console.print(f"[yellow]STALE[/] (written by an older version): {shown}", highlight=False, soft_wrap=True)
        console.print(f"  reprocess them with: backfill run {pipeline} --start {stale[0]} --end {stale[-1]}")
    if report.upstream_stale:
        keys = [k for k, _ in report.upstream_stale]
        shown = "; ".join(f"{k} ← {why}" for k, why in report.upstream_stale[:5])
        more = f" … and {len(keys) - 5} more" if len(keys) > 5 else ""
        console.print(
            f"[yellow]STALE UPSTREAM[/] {len(keys)} partition(s) an upstream run rewrote the input of: {shown}{more}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"  the next run reprocesses them: backfill run {pipeline} --start {keys[0]} --end {keys[-1]}")
    if report.old_shape:
        old = report.old_shape
        shown = ", ".join(old[:10]) + (" …" if len(old) > 10 else "")
        console.print(
            f"[yellow]OLD SCHEMA[/] {len(old)} partition(s) written before the target's columns changed (they read "
            f"new columns as NULL): {shown}",
            highlight=False,
            soft_wrap=True,
        )
    if undone:
        keys = [k for k, _ in undone]
        runs = sorted({r[:8] for _, r in undone if r})
        shown = ", ".join(keys[:10]) + (" …" if len(keys) > 10 else "")
        console.print(
            f"[magenta]UNDONE[/] (restored to their content before run {', '.join(runs)}): {shown}",
            highlight=False,
            soft_wrap=True,
        )
        console.print(f"  the next run reprocesses them: backfill run {pipeline} --start {keys[0]} --end {keys[-1]}")


def _print_calendar(grid: Any) -> None:
    """Month grids side by side, each day marked by its status (the same grid as the UI artifact)."""
    from rich.columns import Columns

    from prefect_backfill.calendar import legend
    from prefect_backfill.partitions import Grain

    tables = []
    for title, weeks in grid.months:
        if grid.grain is Grain.MONTH:
            month_table = Table(*[f"{m:02d}" for m in range(1, 13)], title=title, box=None, pad_edge=False)
        else:
            month_table = Table("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su", title=title, box=None, pad_edge=False)
        for week in weeks:
            month_table.add_row(*[f"{cell[0]:>2}{cell[1].mark}" if cell else "" for cell in week])
        tables.append(month_table)
    console.print(Columns(tables, padding=(0, 3)))
    console.print(legend(grid.totals), highlight=False, soft_wrap=True)
