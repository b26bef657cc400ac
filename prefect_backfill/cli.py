"""``backfill``: run, plan and inspect backfills from a terminal.

Ranges are inclusive: ``--start 2024-01-01 --end 2024-06-30`` is 182 daily partitions. Every error the
user can cause prints one line (``error: …``) and exits non-zero; nothing is written before the
request is valid.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table

from prefect_backfill.errors import BackfillError
from prefect_backfill.planning import Status

__all__ = ["app", "main"]

app = typer.Typer(
    name="backfill",
    help="Reprocess date-partitioned Delta tables partition by partition, resumably, with Prefect.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()

Start = Annotated[str, typer.Option("--start", help="First partition, inclusive (YYYY-MM-DD).")]
End = Annotated[str, typer.Option("--end", help="Last partition, inclusive (YYYY-MM-DD).")]
ReprocessOpt = Annotated[
    str, typer.Option("--reprocess", help="missing (default: not complete for this version) | failed | all")
]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help="Partition key to leave out (repeatable).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@app.command()
def pipelines() -> None:
    """List registered pipelines."""
    from prefect_backfill.registry import all_pipelines

    table = Table("name", "grain", "version", "source", "target", "partition column")
    for p in all_pipelines():
        table.add_row(p.name, p.grain.value, p.fingerprint, str(p.source), str(p.target), p.partition_column)
    console.print(table)


@app.command()
def plan(
    pipeline: str,
    start: Start,
    end: End,
    reprocess: ReprocessOpt = "missing",
    exclude: Exclude = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    yes: Annotated[bool, typer.Option("--yes")] = False,
    as_json: AsJson = False,
) -> None:
    """Dry run: which partitions a run would process, and why the others are skipped. Writes nothing."""
    from prefect_backfill.request import BackfillRequest, prepare

    request = BackfillRequest.build(
        pipeline=pipeline,
        start=start,
        end=end,
        reprocess=reprocess,
        exclude=tuple(exclude or ()),
        newest_first=newest_first,
        yes=yes,
    )
    the_plan = prepare(request).plan
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": the_plan.pipeline,
                    "fingerprint": the_plan.fingerprint,
                    "reprocess": the_plan.reprocess.value,
                    "to_run": [p.key for p in the_plan.to_run],
                    "skipped": [{"partition": s.partition.key, "reason": s.reason} for s in the_plan.skipped],
                },
                indent=2,
            )
        )
    else:
        console.print(str(the_plan), highlight=False)


@app.command()
def run(
    pipeline: str,
    start: Start,
    end: End,
    reprocess: ReprocessOpt = "missing",
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 2,
    retries: Annotated[int, typer.Option("--retries", min=0)] = 2,
    exclude: Exclude = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a range above the safety cap.")] = False,
) -> None:
    """Backfill PIPELINE from --start to --end (inclusive) as a Prefect flow run."""
    from prefect_backfill.request import BackfillRequest, prepare

    params: dict[str, Any] = dict(
        pipeline=pipeline,
        start=start,
        end=end,
        reprocess=reprocess,
        max_concurrency=max_concurrency,
        retries=retries,
        exclude=list(exclude or ()),
        newest_first=newest_first,
        yes=yes,
    )
    # Validate and plan before Prefect starts: bad input fails fast and writes nothing.
    prepared = prepare(BackfillRequest.build(**{**params, "exclude": tuple(params["exclude"])}))
    console.print(str(prepared.plan), highlight=False)
    from flows.backfill import backfill

    summary = backfill(**params)
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    console.print(
        f"[bold]{summary['pipeline']}[/]: {len(summary['completed'])} completed, {len(summary['cached'])} cached, "
        f"{summary['skipped']} skipped, {len(summary['failed'])} failed of {summary['total']}; "
        f"{summary['rows_written']:,} rows written in {summary['duration_s']:.1f}s",
        highlight=False,
    )


@app.command()
def status(
    pipeline: str,
    start: Annotated[str | None, typer.Option("--start")] = None,
    end: Annotated[str | None, typer.Option("--end")] = None,
    as_json: AsJson = False,
) -> None:
    """Counts per status, failed partitions with their errors, stale partitions. Needs no Spark."""
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import parse_bound
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    states = Ledger(ledger_location(spec, get_settings())).current(pipeline)
    if start or end:
        lo = parse_bound(start, spec.grain, name="start") if start else None
        hi = parse_bound(end, spec.grain, end=True, name="end") if end else None
        from prefect_backfill.partitions import parse_partition_key

        states = {
            k: s
            for k, s in states.items()
            if (lo is None or parse_partition_key(k, spec.grain).start >= lo)
            and (hi is None or parse_partition_key(k, spec.grain).start <= hi)
        }
    counts = Counter(s.status.value for s in states.values())
    failed = sorted((k, s.error or "") for k, s in states.items() if s.status is Status.FAILED)
    stale = sorted(k for k, s in states.items() if s.status is Status.COMPLETE and s.fingerprint != spec.fingerprint)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": pipeline,
                    "fingerprint": spec.fingerprint,
                    "counts": {st.value: counts.get(st.value, 0) for st in Status},
                    "failed": [{"partition": k, "error": e} for k, e in failed],
                    "stale": stale,
                },
                indent=2,
            )
        )
        return
    table = Table("status", "partitions", title=f"{pipeline} (current version {spec.fingerprint})")
    for st in Status:
        table.add_row(st.value, str(counts.get(st.value, 0)))
    table.add_row("stale (older version)", str(len(stale)))
    console.print(table)
    for key, error in failed:
        console.print(f"[red]FAILED[/] {key}: {error}", highlight=False)


@app.command()
def setup() -> None:
    """Fetch Delta's jars from Maven Central into the project cache and check Spark + Delta start."""
    from prefect_backfill.engine.spark import DELTA_PACKAGE, get_spark
    from prefect_backfill.settings import get_settings

    spark = get_spark()
    console.print(
        f"Spark {spark.version} with {DELTA_PACKAGE} ready (jars cached in {get_settings().ivy_dir})",
        highlight=False,
    )


@app.command()
def demo(
    rows_per_day: Annotated[int, typer.Option("--rows-per-day", min=1)] = 2_000,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 2,
    regenerate: Annotated[bool, typer.Option("--regenerate", help="Rewrite the bronze table.")] = False,
) -> None:
    """Create the demo bronze table (once) and backfill demo_orders over 2024-01-01 … 2024-06-30."""
    from prefect_backfill import demo as demo_module
    from prefect_backfill.engine.delta import SparkDeltaEngine
    from prefect_backfill.pipeline import TableRef

    if regenerate or not SparkDeltaEngine.instance().describe(TableRef(demo_module.bronze_path())).exists:
        rows = demo_module.generate_orders(demo_module.bronze_path(), rows_per_day=rows_per_day)
        console.print(f"wrote {rows:,} bronze orders to {demo_module.bronze_path()}", highlight=False)
    run(
        "demo_orders",
        demo_module.DEMO_START,
        demo_module.DEMO_END,
        "missing",
        max_concurrency,
        2,
        None,
        False,
        False,
    )


def main() -> None:
    """Entry point: one-line errors for everything the user can get wrong."""
    try:
        app(standalone_mode=False)
    except BackfillError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
