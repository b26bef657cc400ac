"""Run a prepared plan inside the backfill flow, in steps a reader can follow:

1. **serve from the cache** the due partitions whose records prove them complete (a lost ledger);
2. **claim** (under a lease): leave out what live runs hold, take free slots of the cap, record PENDING;
3. **chunk**: pack the claimed partitions into consecutive chunks by source bytes (one Spark job and
   one Delta commit each; the partition stays the unit of the ledger, the cache and failures);
4. **submit** the chunks, never more than the run's slots in flight, none that would not fit before the
   night window closes (shrunk to fit), none after it; cancel what still runs at the window's hard stop;
5. **collect** every chunk's per-partition outcomes into the summary, and **publish** the artifacts.

Steps 4 and 5 live in :mod:`.submitting`, the canary gate between 2 and 4 in :mod:`.canary_gate`;
this module strings the steps together and holds the run's lease around them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from prefect.artifacts import create_markdown_artifact
from prefect.futures import PrefectFuture
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from prefect_backfill import phases, stopping
from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.canary_gate import canaries_pass
from prefect_backfill.catalog import with_storage
from prefect_backfill.coordination import claim, pipeline_cap, target_key
from prefect_backfill.drift import is_target_drift, target_drift
from prefect_backfill.engine import get_engine
from prefect_backfill.events import emit_run_finished
from prefect_backfill.executing import ChunkJob
from prefect_backfill.leases import LeaseTable, RunLease, lease_location
from prefect_backfill.ledger import LedgerEvent, latest_states
from prefect_backfill.planning import DueKind, Plan, Reprocess, SkipKind, SkipReason, Status, held_keys, leave_out
from prefect_backfill.preparing import PreparedRun
from prefect_backfill.reporting import artifact_key, publish_diff_artifact, publish_final_artifacts
from prefect_backfill.results import BackfillSummary, PartitionResult
from prefect_backfill.run_state import ServerSideEnd
from prefect_backfill.runners import task_runner
from prefect_backfill.snapshots import TableSnapshot
from prefect_backfill.submitting import Outcome, RunContext, collect, submit

__all__ = ["run_prepared"]


def run_prepared(prepared: PreparedRun, chunk_task: Any, started: float | None = None) -> BackfillSummary:
    """Run ``prepared.plan`` with ``chunk_task`` (``tasks.chunk.backfill_chunk``) inside the current flow.

    ``started`` is the flow's ``time.perf_counter()`` at entry, so the summary's duration includes
    validation and planning (reading the ledger).
    """
    logger = get_run_logger()
    started = time.perf_counter() if started is None else started
    pipeline, plan = prepared.pipeline, prepared.plan
    run_id = str(flow_run.id or uuid.uuid4())
    logger.info("%s", plan)

    out = Outcome()
    if plan.to_run:
        # Ctrl-C or a worker's SIGTERM: no new chunk, the Spark work in flight cancelled (see stopping).
        with (
            stopping.stop_on_signals(lambda _: get_engine().cancel(pipeline)),
            ServerSideEnd(str(flow_run.id) if flow_run.id else None, prepared.settings.state_poll_seconds),
        ):
            if stopping.requested() is not None:  # stopped before it began (while Prefect started the flow)
                out.not_started.extend(p.key for p in plan.to_run)
            else:
                with phases.phase("ensure target"):
                    target = get_engine().ensure_target(pipeline)
                if pipeline.target.path is None and target.location:  # a catalog target, found (or made) by Spark
                    pipeline = with_storage(pipeline, None, target.location)
                    prepared = replace(prepared, pipeline=pipeline)
                target_id = target.table_id or pipeline.target.location
                cache = PartitionCache.from_settings(prepared.settings)
                plan = _serve_cached(prepared, plan, cache, target_id, run_id, out)
                if plan.to_run:
                    phases.mark("chunks")
                    # The task runner is chosen now, by this call's settings (never at import), and only
                    # started when there is work: a Dask cluster costs seconds.
                    with task_runner(prepared.settings, api_url=_api_url()) as runner:

                        def submit_chunk(job: ChunkJob) -> PrefectFuture[Any]:
                            future: PrefectFuture[Any] = runner.submit(chunk_task, {"job": job})
                            return future

                        ctx = RunContext(prepared, run_id, target_id, cache, submit_chunk, out)
                        plan = _claim_and_run(ctx, plan)
            stop = stopping.requested()
            if stop is not None:
                out.stopped, out.stop_code = stop.name, stop.exit_code

    phases.mark("artifacts")  # from here to the flow's return: the summary, its event and the artifacts
    held = held_keys(plan)
    summary = BackfillSummary(
        pipeline=pipeline.name,
        run_id=run_id,
        start=prepared.partitions[0].key if prepared.partitions else "",
        end=prepared.partitions[-1].key if prepared.partitions else "",
        fingerprint=pipeline.fingerprint,
        total=prepared.plan.total,
        # Skipped: complete before, excluded, or completed by another run meanwhile; not the partitions
        # left to a live run (held) nor those served from cache records (cached).
        skipped=len(plan.skipped) - len(held) - len(out.cached),
        completed=tuple(out.completed),
        cached=tuple(out.cached),
        failed=tuple(out.failed),
        not_started=tuple(out.not_started),
        held=held,
        rows_written=out.rows_written,
        duration_s=time.perf_counter() - started,
        bookkeeping_s=tuple(out.bookkeeping),
        gate=out.gate,
        stopped=out.stopped,
        stop_code=out.stop_code,
    )
    logger.info("%s", summary)
    emit_run_finished(summary)
    if held:
        logger.warning(
            "%d partition(s) are held by another live run and left to it: %s",
            len(held),
            "; ".join(sorted({s.reason for s in plan.skipped if s.partition.key in set(held)})),
        )
    if prepared.plan.to_run:
        events = prepared.ledger.events(pipeline.name).to_pylist()
        publish_final_artifacts(pipeline.name, pipeline.fingerprint, prepared.partitions, latest_states(events))
        if out.completed:
            publish_diff_artifact(pipeline.name, run_id, events)
    create_markdown_artifact(
        key=artifact_key(pipeline.name, "summary"),
        markdown=_summary_markdown(summary, prepared.resume_command),
        description=f"{pipeline.name}: {len(out.failed)} failed of {summary.total}",
    )
    return summary


def _serve_cached(
    prepared: PreparedRun, plan: Plan, cache: PartitionCache, target_id: str, run_id: str, out: Outcome
) -> Plan:
    """Step 1: due partitions whose cache record proves them complete (same fingerprint, same source
    files, same target table, and the target still holds what the record says was written: the
    partition, its rows, its files) are recorded COMPLETE (cached) and not run. This is what resumes a
    run whose ledger was lost. Never for ``reprocess=all``, never for a partition due because its
    target drifted (a record cannot repair data another writer changed)."""
    target = prepared.target
    if prepared.request.reprocess is Reprocess.ALL or target is None or not target.exists:
        return plan
    pipeline = prepared.pipeline
    served: list[PartitionResult] = []
    # many due partitions: one listing rather than a lookup each (a request each on a store)
    listed = cache.listing() if cache.worth_listing(len(plan.to_run)) else None
    for partition in plan.to_run:
        why = plan.why.get(partition.key)
        if why is not None and why.kind is DueKind.UNDONE:
            continue  # restored by `backfill undo` to older content: the record describes what was undone
        digest = prepared.source.digest(partition.key) if prepared.source is not None else None
        if not target.has(partition.key) and target.known:
            continue  # a record cannot stand in for data that is gone (an allowed-empty partition reruns)
        if is_target_drift(why):
            continue
        key = cache_key(pipeline.name, partition.key, pipeline.fingerprint, target_id, digest)
        if listed is not None and key not in listed:
            continue
        record = cache.get(key)
        if record is not None and _still_written(record, target):
            served.append(record)
    if not served:
        return plan
    now = datetime.now(UTC)
    prepared.ledger.record(
        [
            LedgerEvent(
                run_id=run_id,
                pipeline=r.pipeline,
                partition=r.partition,
                status=Status.COMPLETE,
                version=pipeline.version,
                fingerprint=r.fingerprint,
                started_at=now,
                finished_at=now,
                rows_in=r.rows_in,
                rows_out=r.rows_out,
                duration_s=0.0,
                table_version=r.table_version,
                source_digest=r.source_digest,
                source_version=prepared.source.version if prepared.source is not None else None,
                target_id=r.target_id,
                cached=True,
                cached_from=r.run_id,
                target_digest=getattr(r, "target_digest", None),
            )
            for r in served
        ]
    )
    out.cached.extend(r.partition for r in served)
    out.rows_written += sum(r.rows_out for r in served)
    return leave_out(plan, {r.partition: SkipReason(SkipKind.CACHED, "cache record") for r in served})


def _still_written(record: PartitionResult, target: TableSnapshot) -> bool:
    """Whether ``target`` still holds what ``record`` says was written (records of older releases carry
    no target digest: then only the partition's rows are compared)."""
    drift = target_drift(
        record.partition,
        target,
        rows=record.rows_out,
        digest=getattr(record, "target_digest", None),
        target_id=None,  # the record's key holds the target's id already
        table_version=record.table_version,
    )
    return drift is None


def _claim_and_run(ctx: RunContext, plan: Plan) -> Plan:
    """Step 2, then 3-5: take a lease, claim what no live run holds and the cap's free slots, run it;
    the plan actually run (without the partitions left to others) is returned.

    The lease is renewed by a heartbeat for as long as this runs and ended when it returns or raises
    (Ctrl-C included); a killed process's lease dies with it (see :mod:`prefect_backfill.leases`)."""
    logger = get_run_logger()
    prepared, run_id, out = ctx.prepared, ctx.run_id, ctx.out
    request, pipeline, ledger = prepared.request, prepared.pipeline, prepared.ledger
    settings = prepared.settings

    def record_claims(mine: Plan) -> None:
        ledger.record(
            [
                LedgerEvent(run_id, pipeline.name, p.key, Status.PENDING, pipeline.version, pipeline.fingerprint)
                for p in mine.to_run
            ]
        )

    def execute(mine: Plan, slots: int, lost: Callable[[], bool]) -> None:
        canaries = prepared.canaries(mine.to_run)
        if canaries:
            total = len(mine.to_run)
            if not canaries_pass(ctx, canaries, total, slots, lost):
                written_first = set(canaries)
                out.not_started.extend(p.key for p in mine.to_run if p not in written_first)
                return
            mine = leave_out(mine, {p.key: SkipReason(SkipKind.CANARY, "written first") for p in canaries})
        chunks = prepared.chunks(mine.to_run, slots)
        logger.info(
            "%d partitions in %d chunk(s) (one Spark job and one Delta commit each; up to %s MB, %d partitions)",
            len(mine.to_run),
            len(chunks),
            f"{request.chunk_mb:g}",
            request.chunk_partitions,
        )
        collect(ctx, submit(ctx, chunks, slots, lost))

    if not settings.coordinate:
        record_claims(plan)
        execute(plan, request.max_concurrency, lambda: False)
        return plan
    leases = LeaseTable(lease_location(ledger.path))
    with RunLease(leases, run_id, pipeline.name, target_key(pipeline.target)) as lease:
        try:
            got = claim(
                leases,
                lease,
                plan,
                current=ledger.current,
                record_claims=record_claims,
                wanted=request.max_concurrency,
                cap=None if prepared.beside_cap else pipeline_cap(pipeline.name, settings.pipeline_cap),
                timeout=settings.wait_timeout,
                planned_at=prepared.planned_at,
                say=logger.warning,
                sleep=_pause_unless_stopped,
            )
        except stopping.Interrupted:  # stopped while waiting for a slot: nothing was claimed
            out.not_started.extend(p.key for p in plan.to_run)
            return plan
        if got.slots and got.slots < request.max_concurrency:
            logger.info("the pipeline's shared cap allows %d partitions in flight for this run", got.slots)
        if got.plan.to_run:
            execute(got.plan, got.slots, lambda: lease.lost)
    return got.plan


def _api_url() -> str | None:
    """The Prefect API this flow run reports to (embedded or not), for task runners whose workers are
    other processes: they must report to it too, not start servers of their own."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as api:
        return str(api.api_url).rstrip("/") or None


def _pause_unless_stopped(seconds: float) -> None:
    """The claim's wait between tries, cut short by a stop signal, which ends the wait."""
    stopping.pause(seconds)
    if stopping.requested() is not None:
        raise stopping.Interrupted


def _summary_markdown(summary: BackfillSummary, resume_command: str) -> str:
    lines = [
        f"# Backfill {summary.pipeline} {summary.start} … {summary.end}",
        "",
        "| completed | cached | skipped | failed | not started | rows written | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| {len(summary.completed)} | {len(summary.cached)} | {summary.skipped} | {len(summary.failed)} "
        f"| {len(summary.not_started)} | {summary.rows_written:,} | {summary.duration_s:.1f} |",
    ]
    if summary.failed:
        lines += ["", "## Failed partitions", "", "| partition | error |", "|---|---|"]
        lines += [f"| {key} | {error.replace('|', '/')} |" for key, error in summary.failed]
        lines += ["", f"Resume with `{resume_command}`"]
    return "\n".join(lines)
