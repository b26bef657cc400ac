"""``backfill status``: the ledger's view of a pipeline, its live runs, text or JSON."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
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
    from prefect_backfill.coordination import target_key
    from prefect_backfill.leases import LeaseTable, lease_location
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import parse_partition_key, partitions_between
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.progress import estimate
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    for value in (start, end):  # a bad bound is a usage error even when nothing is recorded yet
        if value is not None:
            parse_partition_key(value, spec.grain)
    ledger_path = ledger_location(spec, get_settings())
    states, history = Ledger(ledger_path).read(pipeline)
    recorded = bool(states)
    if not states and not (start and end):
        if as_json:  # the same keys as always, so scripts need no special case
            print(
                json.dumps(
                    {
                        "pipeline": pipeline,
                        "fingerprint": spec.fingerprint,
                        "range": None,
                        "counts": {st.value: 0 for st in Status},
                        "never_run": 0,
                        "failed": [],
                        "stale": [],
                        "undone": [],
                        "eta_seconds": None,
                        "recorded": False,
                        "live_runs": [],
                        "interrupted": [],
                    },
                    indent=2,
                )
            )
            return
        console.print(f"{pipeline}: nothing recorded yet (ledger {ledger_location(spec, get_settings())})")
        return
    keys = sorted(states)
    lo = start or parse_partition_key(keys[0], spec.grain).start
    hi = end or parse_partition_key(keys[-1], spec.grain).start
    partitions = partitions_between(lo, hi, spec.grain)
    in_range = {p.key for p in partitions}
    states = {k: s for k, s in states.items() if k in in_range}
    counts = Counter(s.status.value for s in states.values())
    failed = sorted((k, s.error or "") for k, s in states.items() if s.status is Status.FAILED)
    checks = {k: s.check_name for k, s in states.items() if s.status is Status.FAILED and s.check_name}
    stale = sorted(k for k, s in states.items() if s.status is Status.COMPLETE and s.fingerprint != spec.fingerprint)
    undone = sorted((k, s.undone_run or "") for k, s in states.items() if s.status is Status.UNDONE)
    # "Running" only for a run whose lease is live: a killed run's claims are interrupted, not running.
    # Live runs on the target, of any pipeline writing it (an alias's run holds its partitions too).
    live = LeaseTable(lease_location(ledger_path)).live_runs(target_key(spec.target), pipeline)
    open_claims = {k: s for k, s in states.items() if s.status in (Status.PENDING, Status.RUNNING)}
    in_flight = {k: s for k, s in open_claims.items() if s.run_id in live}
    interrupted = sorted(set(open_claims) - set(in_flight))
    running = sum(1 for s in in_flight.values() if s.status is Status.RUNNING)
    eta = estimate(len(in_flight), [], max(1, running), history) if in_flight else None
    drift, drift_unknown = _drift_of(spec, [p.key for p in partitions], states)
    drifted = {f.partition: f for f in drift.findings} if drift is not None else {}
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": pipeline,
                    "fingerprint": spec.fingerprint,
                    "range": [partitions[0].key, partitions[-1].key],
                    "counts": {st.value: counts.get(st.value, 0) for st in Status},
                    "never_run": len(partitions) - len(states),
                    "failed": [{"partition": k, "error": e, "check": checks.get(k)} for k, e in failed],
                    "stale": stale,
                    "undone": [{"partition": k, "undone_run": r} for k, r in undone],
                    "eta_seconds": eta.seconds if eta else None,
                    "recorded": recorded,
                    "live_runs": [
                        {
                            "run_id": lease.run_id,
                            "pipeline": lease.pipeline,
                            "host": lease.holder.host,
                            "pid": lease.holder.pid,
                            "since": lease.started_at.isoformat(),
                            "slots": lease.slots,
                        }
                        for lease in live.values()
                    ],
                    "interrupted": interrupted,
                    "drifted": [f.to_dict() for f in drifted.values()],
                    "drift_checked": drift is not None,
                },
                indent=2,
            )
        )
        return
    table = Table("status", "partitions", title=f"{pipeline} {partitions[0].key} … {partitions[-1].key}")
    for st in Status:
        table.add_row(st.value, str(counts.get(st.value, 0)))
    table.add_row("never run", str(len(partitions) - len(states)))
    table.add_row("stale (older version)", str(len(stale)))
    table.add_row("drifted (table ≠ ledger)", str(len(drifted)) if drift is not None else "not checked")
    console.print(table)
    console.print(f"current version {spec.fingerprint}", highlight=False)
    for lease in live.values():
        of = f" of pipeline {lease.pipeline}" if lease.pipeline != pipeline else ""
        console.print(f"running backfill: {lease.describe()}{of}", highlight=False, soft_wrap=True)
    if eta is not None:
        console.print(f"  {len(in_flight)} partitions claimed by live runs: {eta}", highlight=False, soft_wrap=True)
    if interrupted:
        console.print(
            f"[yellow]INTERRUPTED[/] {len(interrupted)} partition(s) left PENDING/RUNNING by runs that are no longer "
            f"alive ({interrupted[0]} …): the next `backfill run` takes them over",
            highlight=False,
            soft_wrap=True,
        )
    _print_calendar(build_grid(partitions, states, spec.fingerprint, drifted))
    if drift_unknown:
        _say(f"drift not checked: {drift_unknown}", style="yellow")
    for key, finding in drifted.items():
        _say(f"DRIFTED {key}: {finding.detail}", style="red")
    if drift is not None and drift.repair_command:
        _say(f"  repair them with: {drift.repair_command} (see backfill audit {pipeline})")
    for key, error in failed:
        console.print(f"[red]FAILED[/] {key}: {error}", highlight=False, soft_wrap=True)
    if stale:
        shown = ", ".join(stale[:10]) + (" …" if len(stale) > 10 else "")
        console.print(f"[yellow]STALE[/] (written by an older version): {shown}", highlight=False, soft_wrap=True)
        console.print(f"  reprocess them with: backfill run {pipeline} --start {stale[0]} --end {stale[-1]}")
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


def _drift_of(spec: Any, keys: Sequence[str], states: Any) -> tuple[Any, str]:
    """The audit of ``keys`` for ``status`` (None when nothing is complete), or why it could not be made:
    status is a view, so an unreadable target log is said, not raised."""
    from prefect_backfill.audit import audit, read_target
    from prefect_backfill.errors import one_line

    if not any(s.status is Status.COMPLETE for s in states.values()):
        return None, ""
    try:
        target = read_target(spec)
    except Exception as exc:
        return None, f"the target's log cannot be read ({one_line(exc, 200)})"
    if not target.known:
        return None, f"the log of {spec.target} gives no partitions by {spec.partition_column}"
    return audit(spec.name, str(spec.target), keys, states, target), ""


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
