"""``backfill diff`` and ``backfill audit``: what a run changed, and whether the table still holds what
the ledger says."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from prefect_backfill.cli.app import AsJson, End, Start, _exit_codes_help, _say, app, console


@app.command()
def diff(
    pipeline: str,
    run_id: Annotated[
        str | None, typer.Option("--run", help="Run id (or its first 8+ characters); default: the latest run.")
    ] = None,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Partitions shown before the total.")] = 10_000,
) -> None:
    """What a run changed: per partition it overwrote, rows and column sums before and after, and keys
    added, removed and changed when the pipeline declares a key. Reads only the ledger."""
    from prefect_backfill.diff import diffed_run, run_diffs, table_rows, totals
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    events = Ledger(ledger_location(spec, get_settings())).events(pipeline).to_pylist()
    chosen = diffed_run(events, run_id, pipeline)
    diffs = run_diffs(events, chosen)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": pipeline,
                    "run_id": chosen,
                    "partitions": [d.as_dict() for d in diffs],
                    "total": totals(diffs).as_dict(),
                },
                indent=2,
            )
        )
        return
    head, rows = table_rows(diffs, limit=limit)
    table = Table(*head, title=f"{pipeline}: what run {chosen} changed (before → after)")
    for row in rows[:-1]:
        table.add_row(*row)
    table.add_row(*[f"[bold]{cell}[/]" for cell in rows[-1]])
    # Piped into a file or a log, a wide table must not be folded to 80 columns: nobody resizes a file.
    (console if console.is_terminal else Console(width=240)).print(table)


@app.command(epilog=_exit_codes_help())
def audit(
    pipeline: str,
    start: Start = None,
    end: End = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (also for errors).")] = False,
) -> None:
    """Compare the ledger with the target table: partitions COMPLETE in the ledger that are missing or
    empty in the table, whose rows differ from the Delta log's statistics, or that another writer rewrote
    after our commit. Exits 0 when clean, 1 when the data drifted (the next plain `backfill run` repairs
    it). Reads the ledger and the target's log: no Spark for a path target. Writes nothing."""
    report = _audit_report(pipeline, start, end)  # an error under --json: printed as JSON by run_cli
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_audit(report)
    if not report.clean:
        raise typer.Exit(1)


def _audit_report(pipeline: str, start: str | None, end: str | None) -> Any:
    from prefect_backfill.audit import audit as audit_partitions
    from prefect_backfill.audit import read_target
    from prefect_backfill.catalog import resolved
    from prefect_backfill.errors import InvalidRequestError, TargetLayoutError
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import parse_partition_key, partitions_between
    from prefect_backfill.preparing import ledger_location
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.settings import get_settings

    spec = resolved(get_pipeline(pipeline), get_settings())  # a catalog target's storage, from its metastore
    ledger_path = ledger_location(spec, get_settings())
    states = Ledger(ledger_path).current(pipeline)
    if not states:
        raise InvalidRequestError(
            f"{pipeline} has no events in its ledger {ledger_path} (missing or empty): nothing to audit; "
            f"run a backfill first (backfill run {pipeline} --start … --end …) or check BACKFILL_LEDGER_PATH"
        )
    keys = sorted(states)
    lo = start or parse_partition_key(keys[0], spec.grain).start
    hi = end or parse_partition_key(keys[-1], spec.grain).start
    asked = partitions_between(lo, hi, spec.grain)
    partitions = [p.key for p in asked]
    target = read_target(spec, states, rows_of=asked)  # a clustered or unpartitioned target: its rows, read
    if not target.known:
        raise TargetLayoutError(
            f"the log of target {spec.target} gives no partitions by {spec.partition_column} (partitioned by "
            "other columns, or a storage delta-rs cannot open): the audit cannot compare it with the ledger"
        )
    return audit_partitions(spec.name, str(spec.target), partitions, states, target)


def _print_audit(report: Any) -> None:
    span = f"{report.partitions[0]} … {report.partitions[-1]}" if report.partitions else "(empty range)"
    at = f" at version {report.target_version}" if report.target_version is not None else ""
    _say(f"audit of {report.pipeline} {span}: target {report.target}{at}")
    _say(f"  {report.checked} complete partition(s) compared with the table: {len(report.findings)} drifted")
    if report.findings:
        table = Table("partition", "drift", "the ledger says", "the table holds")
        for f in report.findings:
            table.add_row(f.partition, f.kind.value, f.ledger_says, f.table_holds)
        console.print(table, highlight=False)
    if report.unverified:
        _say(
            f"  {len(report.unverified)} partition(s) have no recorded target digest (written by an older release, "
            "or by a run that could not read the target's log): presence and rows checked; a rewrite with the "
            "same row count cannot be told until they are written again",
            style="yellow",
        )
    if report.clean:
        _say("clean: the table holds what the ledger says", style="green")
        return
    _say(
        f"DRIFT: {len(report.findings)} partition(s) no longer hold what the ledger recorded: a finding about the "
        "data (another writer changed the table), not an error of this tool; they are due again under the "
        "default policy",
        style="red",
    )
    _say(f"repair with: {report.repair_command}")
