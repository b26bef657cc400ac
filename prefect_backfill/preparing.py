"""From a request to a prepared run: the request checked against its pipeline and the safety cap, the
ledger read, the source's and target's logs read once, and the plan made. Shared by the CLI (which
prints the plan before Prefect starts) and the flow."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prefect_backfill import window
from prefect_backfill.canary import pick_canaries
from prefect_backfill.catalog import resolved
from prefect_backfill.chunking import Chunk, make_chunks
from prefect_backfill.coordination import held_on_target, target_key
from prefect_backfill.engine import Engine, get_engine
from prefect_backfill.errors import (
    BackfillError,
    InvalidRequestError,
    RangeTooLargeError,
    SourceNotFoundError,
    TableUnreadableError,
    one_line,
)
from prefect_backfill.leases import LeaseTable, lease_location
from prefect_backfill.ledger import Ledger
from prefect_backfill.partitions import Partition, parse_partition_key, partitions_between
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.planning import Plan, held_keys, make_plan, without_held
from prefect_backfill.registry import get_pipeline
from prefect_backfill.request import BackfillRequest
from prefect_backfill.results import BackfillSummary
from prefect_backfill.settings import BackfillSettings, get_settings
from prefect_backfill.snapshots import TableSnapshot
from prefect_backfill.store_probe import explained
from prefect_backfill.tables import explain_rewrites
from prefect_backfill.window import resolve_deadline

__all__ = ["PreparedRun", "handed_over", "handing_over", "ledger_location", "prepare"]


def ledger_location(pipeline: Pipeline, settings: BackfillSettings) -> str:
    """The progress table: a setting, or ``_backfill_progress`` beside a path target."""
    if settings.ledger_path:
        return settings.ledger_path
    if pipeline.target.is_path:
        # String arithmetic, not Path: "s3://bucket/silver/orders" must stay a URI.
        return pipeline.target.location.rstrip("/").rsplit("/", 1)[0] + "/_backfill_progress"
    raise InvalidRequestError(
        f"pipeline {pipeline.name} writes to catalog table {pipeline.target}: set BACKFILL_LEDGER_PATH "
        "to a Delta path for the progress table"
    )


@dataclass(frozen=True)
class PreparedRun:
    request: BackfillRequest
    pipeline: Pipeline
    partitions: tuple[Partition, ...]
    ledger: Ledger
    plan: Plan
    history: tuple[float, ...] = ()  # durations of earlier completed partitions, for the first ETA
    source: TableSnapshot | None = None  # the source's partitions from its log, when planned
    target: TableSnapshot | None = None  # the target's, likewise (exists=False before its first run)
    planned_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: The settings it was prepared with: every later step of the run reads these, not the environment again.
    settings: BackfillSettings = field(default_factory=get_settings)
    #: Runs beside the pipeline's cap instead of in it: the daily pipeline's runs, which must never wait
    #: for the slots a backfill holds (claims still apply; see coordination.claim).
    beside_cap: bool = False

    def chunks(self, to_run: Sequence[Partition], slots: int) -> list[Chunk]:
        """How ``to_run`` is executed with ``slots`` in flight: chunks packed by the source's bytes
        (see :mod:`prefect_backfill.chunking`); one partition per chunk for a transform that is not
        partition-local."""
        sizes = {k: f.size_bytes for k, f in self.source.partitions.items()} if self.source is not None else None
        return make_chunks(
            to_run,
            sizes,
            budget_bytes=int(self.request.chunk_mb * 1024 * 1024),
            max_partitions=self.request.chunk_partitions if self.pipeline.partition_local else 1,
            concurrency=slots,
            newest_first=self.request.newest_first,
            min_share_bytes=int(self.settings.chunk_min_share_mb * 1024 * 1024),
        )

    def canaries(self, to_run: Sequence[Partition]) -> list[Partition]:
        """The partitions of ``to_run`` to write first and show before the rest (the canary gate)."""
        explicit = tuple(parse_partition_key(k, self.pipeline.grain).key for k in self.request.canary_partitions)
        if not explicit and not self.request.canary:
            return []
        due = {p.key for p in to_run}
        return pick_canaries(to_run, self.request.canary, [k for k in explicit if k in due])

    def source_rows(self, keys: Sequence[str]) -> list[int | None]:
        """Rows per source partition from the plan's read of the log (None where the log has no
        statistics): the chunks need them for their checks, and need not read the log again."""
        source = self.source
        if source is None or not source.known:
            return [None] * len(keys)
        return [f.num_records if (f := source.partitions.get(k)) is not None else 0 for k in keys]

    def source_bytes(self, keys: Sequence[str]) -> list[int | None]:
        """Bytes per source partition from the plan's read of the log (None where it is unknown): a chunk
        decides by its size whether to cache its output (:mod:`prefect_backfill.engine.output_reuse`)."""
        source = self.source
        if source is None or not source.known:
            return [None] * len(keys)
        return [f.size_bytes if (f := source.partitions.get(k)) is not None else 0 for k in keys]

    def summary_without_work(self, duration_s: float) -> BackfillSummary:
        """The run's summary when its plan has nothing to run (every partition complete, excluded or held
        by another live run): what the flow would report, without a flow run, a server or Spark."""
        assert not self.plan.to_run, "only a plan with nothing to run is summed up without running it"
        held = held_keys(self.plan)
        return BackfillSummary(
            pipeline=self.pipeline.name,
            run_id="",  # no flow run: nothing was written, so there is nothing to undo or diff
            start=self.partitions[0].key if self.partitions else "",
            end=self.partitions[-1].key if self.partitions else "",
            fingerprint=self.pipeline.fingerprint,
            total=self.plan.total,
            skipped=len(self.plan.skipped) - len(held),
            held=held,
            duration_s=duration_s,
        )

    @property
    def resume_command(self) -> str:
        """The shell command that runs this request again, every option as given (shell-quoted)."""
        return shlex.join(["backfill", "run", *self.request.cli_args()])


#: The plan the CLI made for the flow it runs in this very call (see :func:`handing_over`).
_handed_over: ContextVar[PreparedRun | None] = ContextVar("backfill_handed_over", default=None)


@contextlib.contextmanager
def handing_over(prepared: PreparedRun) -> Iterator[None]:
    """Within this block, the flow's :func:`handed_over` of an equal request takes ``prepared`` instead
    of planning again: the CLI plans (to print the plan and refuse bad input before Prefect starts) and
    the flow it calls in this thread uses that plan. Scoped to the call, never process-wide (a context
    variable, as Prefect's own run contexts are); claims are checked again under the lock anyway."""
    token = _handed_over.set(prepared)
    try:
        yield
    finally:
        _handed_over.reset(token)


def handed_over(request: BackfillRequest) -> PreparedRun | None:
    """The plan handed over for ``request`` by the caller of this flow, if any (taken once)."""
    prepared = _handed_over.get()
    if prepared is None or prepared.request != request:
        return None
    _handed_over.set(None)
    return prepared


def prepare(request: BackfillRequest, settings: BackfillSettings | None = None) -> PreparedRun:
    """Validate the request against its pipeline and the safety cap, read the ledger, and plan."""
    planned_at = datetime.now(UTC)  # before the ledger is read: what completes after it is seen as new
    settings = settings or get_settings()
    # Catalog tables: where their files are, from the metastore (no Spark), so the plan reads their logs.
    pipeline = resolved(get_pipeline(request.pipeline), settings)
    if request.partitions:
        # An explicit list: each key parsed for the pipeline's grain, duplicates dropped.
        partitions = sorted({parse_partition_key(key, pipeline.grain) for key in request.partitions})
    else:
        assert request.start is not None and request.end is not None  # the model validator says so
        partitions = partitions_between(request.start, request.end, pipeline.grain)
    if len(partitions) > settings.max_partitions and not request.yes:
        raise RangeTooLargeError(
            f"{len(partitions)} partitions is more than the safety cap of {settings.max_partitions}: "
            "pass --yes (yes=true) if you mean it, or raise BACKFILL_MAX_PARTITIONS"
        )
    if request.max_concurrency > settings.max_workers:
        raise InvalidRequestError(
            f"max_concurrency {request.max_concurrency} is more than the worker pool ({settings.max_workers}): "
            "lower it or raise BACKFILL_MAX_WORKERS"
        )
    resolve_deadline(request.window_end, request.timezone, window.clock())  # fail fast on a bad window
    ledger = Ledger(ledger_location(pipeline, settings))
    current, history = ledger.read(pipeline.name)
    # The ledger says what was written; the logs say what is there now (one log read per table).
    engine = get_engine()
    source = _snapshot(engine, pipeline.source, pipeline, "source")
    source = explain_rewrites(source, pipeline.partition_column, pipeline.grain, current, "source")
    if not source.exists:
        raise SourceNotFoundError(
            f"source table {pipeline.source} of pipeline {pipeline.name} does not exist (or is not a "
            "Delta table): check the pipeline's source"
        )
    target = _snapshot(engine, pipeline.target, pipeline, "target")
    target = explain_rewrites(target, pipeline.partition_column, pipeline.grain, current)
    plan = make_plan(
        pipeline.name,
        pipeline.fingerprint,
        partitions,
        current,
        request.reprocess,
        exclude=request.exclude,
        newest_first=request.newest_first,
        source=source,
        target=target,
    )
    if settings.coordinate and plan.to_run:  # say up front what live runs hold (the run claims again)
        live = LeaseTable(lease_location(ledger.path)).live_runs(target_key(pipeline.target), pipeline.name)
        plan = without_held(plan, held_on_target(pipeline.name, current, ledger.current, "", live))
    if request.canary_partitions:  # each one a key of this pipeline's grain that this run would write
        keys = tuple(parse_partition_key(k, pipeline.grain).key for k in request.canary_partitions)
        pick_canaries(plan.to_run, 0, keys)
    return PreparedRun(
        request,
        pipeline,
        tuple(partitions),
        ledger,
        plan,
        tuple(history[-200:]),
        source,
        target,
        planned_at,
        settings,
    )


def _snapshot(engine: Engine, table: TableRef, pipeline: Pipeline, role: str) -> TableSnapshot:
    """The ``role`` table's snapshot for the plan. A path table that exists but cannot be read (no
    permission on its prefix or folder, a store refusing it) is one line naming it, asked of its store
    (:func:`explained`), not the reading library's text; likewise a catalog table whose storage its metastore
    gave. Other catalog tables are read through Spark, whose errors (a JVM that cannot start, say) keep their
    own types."""
    try:
        return engine.snapshot(table, pipeline.partition_column, pipeline.grain)
    except BackfillError:
        raise
    except Exception as exc:
        if not table.path:
            raise
        raise TableUnreadableError(
            explained(
                table.path,
                f"{role} table {table} of pipeline {pipeline.name} cannot be read ({one_line(exc, 200)}): "
                "check the permissions on it and that it is a Delta table",
            )
        ) from exc
