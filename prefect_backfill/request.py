"""A backfill request, validated at the boundary, and the plan it leads to.

Shared by the CLI (``run``, ``plan``) and the flow (deployment runs), so both refuse bad input with
the same one-line messages before anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prefect_backfill import window
from prefect_backfill.canary import pick_canaries
from prefect_backfill.chunking import Chunk, make_chunks
from prefect_backfill.coordination import held_on_target, target_key
from prefect_backfill.engine import get_engine
from prefect_backfill.errors import InvalidRequestError, RangeTooLargeError, SourceNotFoundError
from prefect_backfill.leases import LeaseTable, lease_location
from prefect_backfill.ledger import Ledger
from prefect_backfill.limits import MAX_CANARY, MAX_CHUNK_PARTITIONS, MAX_RETRIES
from prefect_backfill.partitions import Partition, parse_partition_key, partitions_between
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.planning import Plan, Reprocess, plan, without_held
from prefect_backfill.registry import get_pipeline
from prefect_backfill.settings import BackfillSettings, get_settings
from prefect_backfill.tables import TableSnapshot
from prefect_backfill.window import resolve_deadline

__all__ = ["BackfillRequest", "PreparedRun", "ledger_location", "prepare"]


#: The `backfill run` flag of each request field: the resume command, and errors named as the user typed them.
FLAGS = {
    "start": "--start",
    "end": "--end",
    "partitions": "--partitions",
    "reprocess": "--reprocess",
    "max_concurrency": "--max-concurrency",
    "retries": "--retries",
    "retry_delay_seconds": "--retry-delay",
    "exclude": "--exclude",
    "newest_first": "--newest-first",
    "chunk_mb": "--chunk-mb",
    "chunk_partitions": "--chunk-partitions",
    "yes": "--yes",
    "window_end": "--window-end",
    "timezone": "--timezone",
    "canary": "--canary",
    "canary_partitions": "--canary-partitions",
    "approve": "--approve",
    "canary_timeout_s": "--canary-timeout",
}


class BackfillRequest(BaseModel):
    """Everything a caller can ask for; JSON-serialisable, so it maps 1:1 onto deployment parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str
    start: str | None = None
    end: str | None = None
    partitions: tuple[str, ...] = ()
    reprocess: Reprocess = Reprocess.MISSING
    max_concurrency: int = Field(2, ge=1)
    retries: int = Field(2, ge=0, le=MAX_RETRIES)
    retry_delay_seconds: float = Field(5.0, ge=0, allow_inf_nan=False)
    exclude: tuple[str, ...] = ()
    newest_first: bool = False
    # Execution granularity: chunks of consecutive partitions, one Spark job and one Delta commit each,
    # up to chunk_mb of source data and chunk_partitions partitions (1: one partition per job).
    chunk_mb: float = Field(256.0, gt=0, allow_inf_nan=False)
    chunk_partitions: int = Field(400, ge=1, le=MAX_CHUNK_PARTITIONS)
    yes: bool = False
    window_end: str | None = None
    timezone: str = "UTC"
    # The canary gate (prefect_backfill.canary): run these partitions first, publish their diff, wait for
    # an approval (Prefect UI form, or the CLI's prompt) before the rest; approve=True does not wait.
    canary: int = Field(0, ge=0, le=MAX_CANARY)
    canary_partitions: tuple[str, ...] = ()
    approve: bool = False
    canary_timeout_s: int = Field(3600, ge=1)

    @field_validator("reprocess", mode="before")
    @classmethod
    def _reprocess(cls, value: object) -> Reprocess:
        return value if isinstance(value, Reprocess) else Reprocess.parse(str(value))

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_text(cls, value: object) -> str | None:
        if value is None or value == "":
            return None
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    @model_validator(mode="after")
    def _range_or_list(self) -> BackfillRequest:
        if self.partitions and (self.start or self.end):
            raise InvalidRequestError("give either --start/--end or --partitions, not both")
        if not self.partitions and not (self.start and self.end):
            raise InvalidRequestError("give --start and --end (inclusive), or an explicit --partitions list")
        return self

    @property
    def describe_range(self) -> str:
        if self.partitions:
            shown = ",".join(self.partitions[:3]) + (f",… ({len(self.partitions)})" if len(self.partitions) > 3 else "")
            return shown
        return f"{self.start}..{self.end}"

    def cli_args(self) -> list[str]:
        """The ``backfill run`` arguments that make exactly this request: the pipeline, then a flag for
        every field that differs from its default, in field order (so the text is stable). The CLI
        parses them back into an equal request (tested); a field without a flag here is a bug."""
        args = [self.pipeline]
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "pipeline" or value == info.default:
                continue
            flag = FLAGS[name]  # KeyError: a new field needs its flag (and a `backfill run` option)
            if isinstance(value, bool):
                args.append(flag)
            elif name in ("partitions", "canary_partitions"):
                args += [flag, ",".join(value)]
            elif isinstance(value, tuple):
                for item in value:
                    args += [flag, str(item)]
            elif isinstance(value, Reprocess):
                args += [flag, value.value]
            else:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args

    @classmethod
    def build(cls, **params: object) -> BackfillRequest:
        """Validate ``params`` into a request, turning pydantic's report into one line."""
        try:
            return cls(**params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "request"
            if isinstance(first.get("ctx", {}).get("error"), InvalidRequestError):
                raise first["ctx"]["error"] from None
            # Named both ways: the flag for the CLI, the parameter for a deployment run.
            named = f"{FLAGS[where]} ({where})" if where in FLAGS else where
            raise InvalidRequestError(f"{named}: {first['msg']}") from None


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
            min_share_bytes=int(get_settings().chunk_min_share_mb * 1024 * 1024),
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

    @property
    def resume_command(self) -> str:
        """The shell command that runs this request again, every option as given (shell-quoted)."""
        import shlex

        return shlex.join(["backfill", "run", *self.request.cli_args()])


# A plan made by the CLI for the flow it then starts in the same process (see :func:`hand_over`).
_handed_over: dict[BackfillRequest, tuple[float, PreparedRun]] = {}
_HAND_OVER_SECONDS = 60.0


def hand_over(prepared: PreparedRun | None) -> None:
    """Let the flow's :func:`prepare` of an equal request in this process, within a minute, take
    ``prepared`` instead of planning again: the CLI plans (to print the plan and refuse bad input before
    Prefect starts) and the flow it runs uses that plan. Taken once; claims are checked again under the
    lock anyway. ``None`` withdraws it (the CLI does, whatever happened to the flow)."""
    _handed_over.clear()
    if prepared is not None:
        _handed_over[prepared.request] = (time.monotonic(), prepared)


def prepare(
    request: BackfillRequest, settings: BackfillSettings | None = None, *, take_handed_over: bool = False
) -> PreparedRun:
    """Validate the request against its pipeline and the safety cap, read the ledger, and plan (or, for
    the flow, ``take_handed_over`` the plan the CLI just made of this very request)."""
    if take_handed_over and (handed := _handed_over.pop(request, None)) is not None:
        made, prepared = handed
        if time.monotonic() - made < _HAND_OVER_SECONDS:
            return prepared
    planned_at = datetime.now(UTC)  # before the ledger is read: what completes after it is seen as new
    settings = settings or get_settings()
    pipeline = get_pipeline(request.pipeline)
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
    source = engine.snapshot(pipeline.source, pipeline.partition_column, pipeline.grain)
    if not source.exists:
        raise SourceNotFoundError(
            f"source table {pipeline.source} of pipeline {pipeline.name} does not exist (or is not a "
            "Delta table): check the pipeline's source"
        )
    target = engine.snapshot(pipeline.target, pipeline.partition_column, pipeline.grain)
    the_plan = plan(
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
    if settings.coordinate and the_plan.to_run:  # say up front what live runs hold (the run claims again)
        live = LeaseTable(lease_location(ledger.path)).live_runs(target_key(pipeline.target), pipeline.name)
        the_plan = without_held(the_plan, held_on_target(pipeline.name, current, ledger.current, "", live))
    if request.canary_partitions:  # each one a key of this pipeline's grain that this run would write
        keys = tuple(parse_partition_key(k, pipeline.grain).key for k in request.canary_partitions)
        pick_canaries(the_plan.to_run, 0, keys)
    return PreparedRun(
        request, pipeline, tuple(partitions), ledger, the_plan, tuple(history[-200:]), source, target, planned_at
    )
