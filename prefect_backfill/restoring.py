"""Carry out an undo: gather what the ledger and the target's Delta log say, plan (pure,
:mod:`prefect_backfill.undo_planning`), restore in one commit, record UNDONE events, stop the cache serving the
undone results. Shared by ``backfill undo`` (CLI) and the ``undo`` flow, so both refuse bad input with
the same one-line messages before anything is written.

How "touched later" is found, and why this way: the partition's *file digest* (see
:mod:`prefect_backfill.tables`) right after the run's commit is compared with the digest now. Delta
never changes a file in place, so any later commit that changed the partition (a write, a DELETE, an
OPTIMIZE, a deletion vector) changed its set of files, and only such a commit did: commits to other
partitions leave the digest alone. Both snapshots come from the log (checkpoint + JSON) with delta-rs,
no JVM for path tables, whatever the number of later commits. Reading the commit files after the run's
version would also work, but only while they exist (log retention deletes old JSON commits; a checkpoint
stands for them) and at a cost that grows with every later commit; so the commit files serve only to
*name* the culprit version and its operation when they are still there, never to decide.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from deltalake.exceptions import DeltaError

from prefect_backfill.caching import PartitionCache, cache_key
from prefect_backfill.catalog import resolved
from prefect_backfill.coordination import held_on_target, target_key
from prefect_backfill.engine import Engine, get_engine
from prefect_backfill.errors import InvalidRequestError, UndoRefusedError
from prefect_backfill.leases import LeaseTable, lease_location
from prefect_backfill.ledger import Ledger, LedgerEvent
from prefect_backfill.marking import mark_downstream
from prefect_backfill.partitions import parse_partition_key, partitions_between
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Status
from prefect_backfill.preparing import ledger_location
from prefect_backfill.registry import get_pipeline
from prefect_backfill.settings import BackfillSettings, get_settings
from prefect_backfill.snapshots import TableSnapshot
from prefect_backfill.tables import commits_touching, files_missing, with_data_changes
from prefect_backfill.undo_planning import LogFacts, RunWrite, UndoPlan, plan_undo, resolve_run, run_writes

__all__ = ["PreparedUndo", "UndoOutcome", "carry_out", "commit_tag", "prepare_undo", "raise_if_refused"]


@dataclass(frozen=True)
class PreparedUndo:
    """A validated undo request and its plan, with what carrying it out needs."""

    pipeline: Pipeline
    plan: UndoPlan
    ledger: Ledger
    writes: dict[str, RunWrite]
    target_version: int | None  # the target's latest version when planned
    target_id: str | None
    request: tuple[str, tuple[str, ...], str | None, str | None, bool]  # what was asked, to plan again


@dataclass(frozen=True)
class UndoOutcome:
    """What an undo did: the partitions restored, the version of its commit, the cache records voided."""

    undo_id: str
    restored: tuple[str, ...]
    table_version: int | None
    cache_invalidated: int = 0


def commit_tag(undo_id: str, pipeline: str, run_id: str) -> str:
    """The undo commit's userMetadata (like the chunks' ``prefect-backfill run=…``), to find its version."""
    return f"prefect-backfill undo={undo_id} pipeline={pipeline} undoes={run_id}"


def _asked(
    spec: Pipeline, run_keys: set[str], partitions: Sequence[str], start: str | None, end: str | None, run_id: str
) -> set[str] | None:
    """The partitions asked for: an explicit list (each one answered), the run's partitions in a range,
    or None (all of the run's)."""
    if partitions and (start or end):
        raise InvalidRequestError("give either --start/--end or --partitions, not both")
    if partitions:
        return {parse_partition_key(k.strip(), spec.grain).key for k in partitions if k.strip()}
    if start or end:
        if not (start and end):
            raise InvalidRequestError("give both --start and --end (inclusive), or --partitions")
        in_range = {p.key for p in partitions_between(start, end, spec.grain)} & run_keys
        if not in_range:
            span = f"{min(run_keys)} … {max(run_keys)}" if run_keys else "none"
            raise InvalidRequestError(
                f"run {run_id} has no partitions between {start} and {end} (its partitions: {span}): check the range"
            )
        return in_range
    return None


def prepare_undo(
    pipeline: str,
    run: str,
    *,
    partitions: Sequence[str] = (),
    start: str | None = None,
    end: str | None = None,
    force: bool = False,
    settings: BackfillSettings | None = None,
    engine: Engine | None = None,
) -> PreparedUndo:
    """Validate the request (unknown pipeline or run, bad keys: one line, exit 2, nothing written) and
    plan the undo from the ledger and the target's log."""
    settings = settings or get_settings()
    spec = resolved(get_pipeline(pipeline), settings)  # a catalog target's storage, from its metastore
    ledger = Ledger(ledger_location(spec, settings))
    rows = ledger.events(spec.name).to_pylist()
    if not rows:
        raise InvalidRequestError(
            f"pipeline {spec.name} has no ledger at {ledger.path} (no run recorded): there is nothing to undo"
        )
    runs: dict[str, datetime] = {}
    for r in rows:
        if r["status"] != Status.UNDONE.value:  # an undo's own id is not a run to undo
            run_id = str(r["run_id"])
            runs[run_id] = max(runs.get(run_id, r["event_time"]), r["event_time"])
    run_id = resolve_run(run, runs, spec.name)
    writes, not_written = run_writes(rows, run_id)
    asked = _asked(spec, set(writes) | set(not_written), partitions, start, end, run_id)
    engine = engine or get_engine()
    column, grain = spec.partition_column, spec.grain
    now = engine.snapshot(spec.target, column, grain)
    if not now.exists:
        raise InvalidRequestError(f"target {spec.target} of {spec.name} does not exist: there is nothing to undo")
    selected = {k: w for k, w in writes.items() if asked is None or k in asked}
    # A clustered or unpartitioned target: its log cannot tell its partitions apart, their rows can (Spark).
    by_rows = not now.known and engine.describe(spec.target).mixes_partitions()
    selected_partitions = [parse_partition_key(k, grain) for k in sorted(selected)]
    if by_rows:
        now = engine.content_snapshot(spec.target, column, grain, keys=selected_partitions)
    if not now.known:
        raise InvalidRequestError(
            f"the Delta log of target {spec.target} cannot be read without Spark (delta-rs cannot open its "
            "storage, or it is partitioned by other columns): undo needs its log"
        )
    at: dict[int, TableSnapshot | None] = {}

    def snapshot_at(version: int) -> TableSnapshot | None:
        if version not in at:
            try:
                snap = (
                    engine.content_snapshot(spec.target, column, grain, version, selected_partitions)
                    if by_rows
                    else engine.snapshot(spec.target, column, grain, version)
                )
                at[version] = snap if snap.known and snap.exists else None
            except DeltaError:  # the log no longer reaches that version
                at[version] = None
        return at[version]

    facts: dict[str, LogFacts] = {}
    for key, write in selected.items():
        after, before = snapshot_at(write.commit_version), snapshot_at(write.restore_version)
        old = before.partitions.get(key) if before is not None else None
        facts[key] = LogFacts(
            digest_at_commit=after.digest(key) if after is not None else None,
            digest_now=now.digest(key) or "",
            restore_readable=before is not None,
            files_missing=files_missing(old.paths) if old is not None else 0,
            files_total=len(old.paths) if old is not None else 0,
            table_id_now=now.table_id,
            rows_at_restore=(old.num_records if old is not None else 0),
        )
    changed = {k for k, f in facts.items() if f.digest_at_commit != f.digest_now}
    if changed and now.location and now.version is not None and not now.content:  # (rows: no compaction to tell)
        first = min(selected[k].commit_version for k in changed)
        # A compaction since the run's commit changed files, not rows: the run's writes are still there.
        changes = with_data_changes(now, column, grain, first).changes
        for key in changed:
            if changes is not None and changes.unchanged_since(key, selected[key].commit_version):
                facts[key] = replace(facts[key], data_unchanged=True)
        changed = {k for k in changed if not facts[k].data_unchanged}
        for version, operation, keys in commits_touching(now.location, column, grain, first, now.version):
            for key in keys & changed:
                if version > selected[key].commit_version and facts[key].later_commit is None:
                    f = facts[key]
                    facts[key] = LogFacts(
                        f.digest_at_commit,
                        f.digest_now,
                        f.restore_readable,
                        f.files_missing,
                        f.files_total,
                        (version, operation),
                        f.table_id_now,
                        f.rows_at_restore,
                    )
    current = ledger.current(spec.name)
    # Any live run on the target, whatever its pipeline: an alias's backfill writes the same partitions.
    live = LeaseTable(lease_location(ledger.path)).live_runs(target_key(spec.target), spec.name)
    undo_plan = plan_undo(
        spec.name,
        run_id,
        writes,
        not_written,
        facts,
        current,
        asked=asked,
        held=held_on_target(spec.name, current, ledger.current, "", live),
        force=force,
    )
    return PreparedUndo(
        spec, undo_plan, ledger, writes, now.version, now.table_id, (run, tuple(partitions), start, end, force)
    )


def carry_out(
    prepared: PreparedUndo,
    undo_id: str | None = None,
    *,
    engine: Engine | None = None,
    cache: PartitionCache | None = None,
) -> UndoOutcome:
    """Void the cache records of what is undone, restore what ``prepared.plan`` restores in one commit,
    then record an UNDONE event per partition. If the target changed since the plan was made and the
    plan would now differ, nothing is written (run the undo again to see the new plan).

    The restore and the ledger are two tables: if the ledger cannot be written after the commit, the
    error says so (exit 1) and the ledger still calls those partitions COMPLETE for the undone run; a
    second undo then refuses them as changed by the undo's own commit (named by its version)."""
    undo_id = undo_id or str(uuid.uuid4())
    undo_plan, spec = prepared.plan, prepared.pipeline
    if not undo_plan.restores:
        return UndoOutcome(undo_id, (), None)
    engine = engine or get_engine()
    latest = engine.snapshot(spec.target, spec.partition_column, spec.grain).version
    if latest != prepared.target_version:
        run, partitions, start, end, force = prepared.request
        again = prepare_undo(
            spec.name, run, partitions=partitions, start=start, end=end, force=force, engine=engine
        ).plan
        if again.restores != undo_plan.restores:
            raise InvalidRequestError(
                f"the target {spec.target} changed since the undo was planned (version {prepared.target_version} "
                f"→ {latest}) and the plan would differ: nothing was written; run the undo again to see the new plan"
            )
    # Cache records first: voiding one that is still right costs a recompute; a record left standing for
    # restored content would bring the undone rows back on a run without the ledger.
    cache = cache or PartitionCache.from_settings(get_settings())
    voided = 0
    for r in undo_plan.restores:
        w = prepared.writes[r.partition]
        if w.target_id is None:
            continue
        key = cache_key(spec.name, r.partition, w.fingerprint, w.target_id, w.source_digest)
        voided += cache.invalidate(key, f"undone by undo {undo_id} of run {undo_plan.run_id}")
    versions = {parse_partition_key(r.partition, spec.grain): r.version for r in undo_plan.restores}
    version = engine.restore(spec, versions, commit_tag(undo_id, spec.name, undo_plan.run_id))
    # The restored partitions changed as much as a run's: what reads them downstream is stale again.
    mark_downstream(spec, undo_id, [r.partition for r in undo_plan.restores], get_settings())
    now = datetime.now(UTC)
    prepared.ledger.record(
        [
            LedgerEvent(
                run_id=undo_id,
                pipeline=spec.name,
                partition=r.partition,
                status=Status.UNDONE,
                version=prepared.writes[r.partition].version,
                fingerprint=prepared.writes[r.partition].fingerprint,
                event_time=now,
                started_at=now,
                finished_at=now,
                rows_out=r.rows,
                table_version=version,
                replaced_version=None if version is None else version - 1,
                target_id=prepared.target_id,
                error=f"forced: {r.overridden}" if r.overridden else None,
                undone_run=undo_plan.run_id,
            )
            for r in undo_plan.restores
        ]
    )
    return UndoOutcome(undo_id, tuple(r.partition for r in undo_plan.restores), version, voided)


def raise_if_refused(prepared: PreparedUndo, outcome: UndoOutcome) -> None:
    """An undo that refused anything did not do what was asked: raise (exit 1, a Failed flow run)."""
    if prepared.plan.refused:
        raise UndoRefusedError(
            prepared.pipeline.name,
            prepared.plan.run_id,
            [(r.partition, r.reason) for r in prepared.plan.refused],
            len(outcome.restored),
        )
