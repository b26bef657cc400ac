"""``backfill``: run, plan and inspect backfills from a terminal.

Ranges are inclusive: ``--start 2024-01-01 --end 2024-06-30`` is 182 daily partitions. Every error the
user can cause prints one line (``error: …``) and exits non-zero; nothing is written before the
request is valid.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections import Counter
from typing import Annotated, Any, cast

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

Start = Annotated[
    str | None, typer.Option("--start", help="First partition, inclusive (YYYY-MM-DD; 2024-01-03T05 hourly; 2024-01).")
]
End = Annotated[str | None, typer.Option("--end", help="Last partition, inclusive.")]
Partitions = Annotated[
    str | None, typer.Option("--partitions", help="Explicit comma-separated partition keys, instead of --start/--end.")
]
ReprocessOpt = Annotated[
    str, typer.Option("--reprocess", help="missing (default: not complete for this version) | failed | all")
]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help="Partition key to leave out (repeatable).")]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _keys(text: str | None) -> tuple[str, ...]:
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())


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
    start: Start = None,
    end: End = None,
    partitions: Partitions = None,
    reprocess: ReprocessOpt = "missing",
    exclude: Exclude = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    yes: Annotated[bool, typer.Option("--yes")] = False,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1, help="For the estimate.")] = 2,
    as_json: AsJson = False,
) -> None:
    """Dry run: which partitions a run would process, why the others are skipped, how long it would take.
    Writes nothing."""
    from prefect_backfill.progress import estimate
    from prefect_backfill.request import BackfillRequest, prepare

    request = BackfillRequest.build(
        pipeline=pipeline,
        start=start,
        end=end,
        partitions=_keys(partitions),
        reprocess=reprocess,
        exclude=tuple(exclude or ()),
        newest_first=newest_first,
        yes=yes,
    )
    prepared = prepare(request)
    the_plan = prepared.plan
    eta = estimate(len(the_plan.to_run), [], max_concurrency, prepared.history)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": the_plan.pipeline,
                    "fingerprint": the_plan.fingerprint,
                    "reprocess": the_plan.reprocess.value,
                    "to_run": [p.key for p in the_plan.to_run],
                    "skipped": [{"partition": s.partition.key, "reason": s.reason} for s in the_plan.skipped],
                    "estimated_seconds": eta.seconds,
                },
                indent=2,
            )
        )
    else:
        console.print(str(the_plan), highlight=False, soft_wrap=True)
        console.print(f"  estimate at concurrency {max_concurrency}: {eta}", highlight=False, soft_wrap=True)


@app.command()
def run(
    pipeline: str,
    start: Start = None,
    end: End = None,
    partitions: Partitions = None,
    reprocess: ReprocessOpt = "missing",
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=1)] = 2,
    retries: Annotated[int, typer.Option("--retries", min=0)] = 2,
    exclude: Exclude = None,
    newest_first: Annotated[bool, typer.Option("--newest-first")] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Partitions per task run (long hourly ranges).")
    ] = 1,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm a range above the safety cap.")] = False,
    window_end: Annotated[
        str | None, typer.Option("--window-end", help="Start no partition after this time (06:00) or instant.")
    ] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="IANA timezone of --window-end.")] = "UTC",
) -> None:
    """Backfill PIPELINE from --start to --end (inclusive) as a Prefect flow run."""
    from prefect_backfill.request import BackfillRequest, prepare

    params: dict[str, Any] = dict(
        pipeline=pipeline,
        start=start,
        end=end,
        partitions=list(_keys(partitions)),
        reprocess=reprocess,
        max_concurrency=max_concurrency,
        retries=retries,
        exclude=list(exclude or ()),
        newest_first=newest_first,
        batch_size=batch_size,
        yes=yes,
        window_end=window_end,
        timezone=timezone,
    )
    # Validate and plan before Prefect starts: bad input fails fast and writes nothing.
    prepared = prepare(
        BackfillRequest.build(**{**params, "exclude": tuple(params["exclude"]), "partitions": _keys(partitions)})
    )
    console.print(str(prepared.plan), highlight=False, soft_wrap=True)
    from flows.backfill import backfill

    with _LedgerProgress(prepared) if console.is_terminal and prepared.plan.to_run else contextlib.nullcontext():
        state = backfill(**params, return_state=True)
    # raises BackfillFailedError (one line, exit 1) if partitions failed
    summary = cast(dict[str, Any], state.result())
    _print_summary(summary)
    if state.name == "WindowClosed":
        console.print(f"[yellow]{state.message}[/]", highlight=False, soft_wrap=True)


class _LedgerProgress:
    """A Rich progress bar for ``backfill run`` in a terminal, fed by the ledger (the flow runs in this
    process, but its tasks report to the ledger, which is the one place that knows everything)."""

    def __init__(self, prepared: Any, interval: float = 2.0) -> None:
        import threading
        from datetime import UTC, datetime

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.prepared, self.interval = prepared, interval
        self.keys = {p.key for p in prepared.plan.to_run}
        self.since = datetime.now(UTC)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(prepared.pipeline.name, total=len(self.keys), note="")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _LedgerProgress:
        self.progress.start()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self._poll()
        self.progress.stop()

    def _poll(self) -> None:
        from prefect_backfill.progress import estimate

        try:
            rows = self.prepared.ledger.events(self.prepared.pipeline.name).to_pylist()
        except Exception:  # the bar is a convenience: never let it break the run
            return
        done: dict[str, str] = {}
        durations = []
        for r in rows:
            if r["partition"] in self.keys and r["event_time"] >= self.since and r["status"] in ("COMPLETE", "FAILED"):
                done[r["partition"]] = r["status"]
                if r["status"] == "COMPLETE" and r["duration_s"]:
                    durations.append(float(r["duration_s"]))
        failed = sum(1 for status in done.values() if status == "FAILED")
        eta = estimate(
            len(self.keys) - len(done), durations, self.prepared.request.max_concurrency, self.prepared.history
        )
        note = (f"[red]{failed} failed[/] · " if failed else "") + str(eta)
        self.progress.update(self.task, completed=len(done), note=note)

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            self._poll()


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
    """Counts per status, failed partitions with errors, stale partitions, a calendar and the ETA of a
    running backfill. Reads only the ledger: needs no Spark and no Prefect server."""
    from prefect_backfill.calendar import build_grid
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import parse_partition_key, partitions_between
    from prefect_backfill.progress import estimate
    from prefect_backfill.registry import get_pipeline
    from prefect_backfill.request import ledger_location
    from prefect_backfill.settings import get_settings

    spec = get_pipeline(pipeline)
    states, history = Ledger(ledger_location(spec, get_settings())).read(pipeline)
    if not states and not (start and end):
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
    stale = sorted(k for k, s in states.items() if s.status is Status.COMPLETE and s.fingerprint != spec.fingerprint)
    running = counts.get(Status.RUNNING.value, 0)
    remaining = running + counts.get(Status.PENDING.value, 0)
    eta = estimate(remaining, [], max(1, running), history) if remaining else None
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": pipeline,
                    "fingerprint": spec.fingerprint,
                    "range": [partitions[0].key, partitions[-1].key],
                    "counts": {st.value: counts.get(st.value, 0) for st in Status},
                    "never_run": len(partitions) - len(states),
                    "failed": [{"partition": k, "error": e} for k, e in failed],
                    "stale": stale,
                    "eta_seconds": eta.seconds if eta else None,
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
    console.print(table)
    console.print(f"current version {spec.fingerprint}", highlight=False)
    if eta is not None:
        console.print(f"running backfill: {eta}", highlight=False, soft_wrap=True)
    _print_calendar(build_grid(partitions, states, spec.fingerprint))
    for key, error in failed:
        console.print(f"[red]FAILED[/] {key}: {error}", highlight=False, soft_wrap=True)
    if stale:
        shown = ", ".join(stale[:10]) + (" …" if len(stale) > 10 else "")
        console.print(f"[yellow]STALE[/] (written by an older version): {shown}", highlight=False, soft_wrap=True)
        console.print(f"  reprocess them with: backfill run {pipeline} --start {stale[0]} --end {stale[-1]}")


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


@app.command("spark-connect")
def spark_connect(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 15002,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for other hosts).")] = "127.0.0.1",
    print_only: Annotated[bool, typer.Option("--print", help="Print the command line instead of running it.")] = False,
) -> None:
    """Run a Spark Connect server with Delta's jars (from pyspark's own launcher), for
    BACKFILL_SPARK_REMOTE=sc://HOST:PORT clients. Runs in the foreground; stop it with Ctrl-C."""
    import os
    import shlex

    from prefect_backfill.engine.spark import connect_server_command, java_home, spark_home
    from prefect_backfill.settings import get_settings

    command = connect_server_command(get_settings(), port, host)
    if print_only:
        print(shlex.join(command))
        return
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "JAVA_HOME": java_home()}
    console.print(f"Spark Connect on sc://{host}:{port} (Ctrl-C stops it)", highlight=False)
    os.execvpe(command[0], command, env)


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
    run("demo_orders", demo_module.DEMO_START, demo_module.DEMO_END, max_concurrency=max_concurrency)


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
