"""``backfill pipelines`` and ``backfill plan``: what is registered, and what a run would do (nothing written)."""

from __future__ import annotations

import json
import statistics

from rich.table import Table

from prefect_backfill.cli.app import AsJson, app, console
from prefect_backfill.cli.request_options import PLAN_FIELDS, request_options
from prefect_backfill.request import BackfillRequest


@app.command()
def pipelines() -> None:
    """List registered pipelines."""
    from prefect_backfill.errors import ConfigurationError
    from prefect_backfill.registry import all_pipelines

    registered = all_pipelines()
    if not registered:  # an empty table with exit 0 would read as "configured, and empty"
        raise ConfigurationError(
            "no pipelines are registered: set BACKFILL_PIPELINE_MODULES=your.module (or pipeline_modules under "
            "[tool.prefect-backfill] in pyproject.toml) to modules that call prefect_backfill.register"
        )
    table = Table("name", "grain", "version", "source", "target", "partition column")
    for p in registered:
        table.add_row(p.name, p.grain.value, p.fingerprint, str(p.source), str(p.target), p.partition_column)
    console.print(table)


@app.command()
@request_options(PLAN_FIELDS)
def plan(request: BackfillRequest, as_json: AsJson = False) -> None:
    """Dry run: which partitions a run would process and why, why the others are skipped, the chunks
    they run in (one Spark job and one commit each) and how long it would take. Writes nothing."""
    from prefect_backfill.eta import format_duration, wave_estimate
    from prefect_backfill.marking import cascade_preview
    from prefect_backfill.preparing import prepare

    max_concurrency = request.max_concurrency
    prepared = prepare(request)
    planned = prepared.plan
    chunks = prepared.chunks(planned.to_run, max_concurrency)
    per_partition = statistics.median(prepared.history) if prepared.history else None

    def chunk_seconds(size: int) -> float | None:
        return per_partition * size if per_partition is not None else None

    eta = wave_estimate([len(c) for c in chunks], max_concurrency, per_partition)
    keys = [p.key for p in planned.to_run]
    cascade = cascade_preview(prepared.pipeline, keys, prepared.settings, request.cascade)
    if as_json:
        print(
            json.dumps(
                {
                    "pipeline": planned.pipeline,
                    "fingerprint": planned.fingerprint,
                    "reprocess": planned.reprocess.value,
                    "to_run": [p.key for p in planned.to_run],
                    "why": dict(planned.why),
                    "skipped": [{"partition": s.partition.key, "reason": s.reason} for s in planned.skipped],
                    "notes": list(planned.notes),
                    "chunks": [
                        {
                            "span": c.span,
                            "partitions": len(c),
                            "source_bytes": c.size_bytes,
                            "estimated_seconds": chunk_seconds(len(c)),
                        }
                        for c in chunks
                    ],
                    "estimated_seconds": eta,
                    "cascade": [step.to_dict() for step in cascade],
                },
                indent=2,
            )
        )
        return
    console.print(str(planned), highlight=False, soft_wrap=True)
    if chunks:
        console.print(
            f"  chunks: {len(chunks)} (one Spark job and one Delta commit each)", highlight=False, soft_wrap=True
        )
        for c in chunks[:10]:
            seconds = chunk_seconds(len(c))
            console.print(
                f"    {c.span}: {len(c)} partition(s), {c.size_bytes / 1024 / 1024:,.2f} MB of source"
                + (f", ~{format_duration(seconds)}" if seconds is not None else ""),
                highlight=False,
                soft_wrap=True,
            )
        if len(chunks) > 10:
            console.print(f"    … and {len(chunks) - 10} more", highlight=False)
    shown = format_duration(eta) if eta is not None else "unknown (no history yet)"
    console.print(f"  estimate at concurrency {max_concurrency}: {shown}", highlight=False, soft_wrap=True)
    for step in cascade:
        console.print(f"  downstream: {step}", highlight=False, soft_wrap=True)
