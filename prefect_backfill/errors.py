"""One error hierarchy for everything a user can get wrong or a run can hit.

Every message is a single line that says what is wrong and how to fix it, because the CLI prints
``str(error)`` as is and Prefect shows it as the flow run's failure message.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from prefect_backfill.results import BackfillSummary, ChunkResult

#: What the ``backfill`` CLI exits with. Scripts and schedulers can rely on these.
EXIT_CODES = {
    0: "every planned partition is complete (or was skipped as complete)",
    1: "partitions failed, or the run itself failed; audit: the table drifted; undo: partitions refused",
    2: "usage: bad input, unknown pipeline, bad settings; nothing was written",
    3: "the night window closed: partitions remain PENDING for the next run",
    4: "partitions were left to another live run, or waiting for it timed out",
    5: "stopped at the canary gate (rejected, or no answer in time): canaries written, the rest PENDING",
    130: "interrupted (Ctrl-C): running chunks cancelled, partitions remain PENDING; the printed command resumes",
    143: "terminated (SIGTERM, e.g. a worker cancelling the flow run): as 130",
}

__all__ = [
    "EXIT_CODES",
    "BackfillError",
    "BackfillFailedError",
    "CanaryStoppedError",
    "CatalogUnavailableError",
    "CheckFailedError",
    "ChunkFailedError",
    "CommitConflictError",
    "ConfigurationError",
    "CoordinationTimeoutError",
    "DeterministicEngineError",
    "EmptyOutputError",
    "EmptySourcePartitionError",
    "EngineCancelledError",
    "EngineDownError",
    "EngineError",
    "FailureKind",
    "InvalidRequestError",
    "LedgerError",
    "PartitionError",
    "PartitionValidationError",
    "PipelineDefinitionError",
    "RangeTooLargeError",
    "RowsOutsidePartitionError",
    "RunStoppedError",
    "SchemaChangeError",
    "ServerStartError",
    "SourceNotFoundError",
    "TableUnreadableError",
    "TargetLayoutError",
    "TransformError",
    "TransientEngineError",
    "UndoRefusedError",
    "UnknownPipelineError",
    "one_line",
]


class BackfillError(Exception):
    """Base of every error this package raises on purpose.

    ``exit_code`` is what the ``backfill`` CLI exits with (see :data:`EXIT_CODES`): usage errors 2, a run
    that did not do all it was asked 1, 3 or 4, never 0.
    """

    exit_code: int = 1


class FailureKind(enum.StrEnum):
    """What the chunk executor does about an error that failed a chunk (``tasks.chunk``)."""

    CANCELLED = "cancelled"  # cancelled on purpose: nothing committed, back to PENDING, never retried
    ENGINE_DOWN = "engine_down"  # the engine is gone: every further attempt fails the same way
    DETERMINISTIC = "deterministic"  # the same input fails the same way: no retry, bisect to the culprits
    TRANSIENT = "transient"  # anything else: retried with backoff


class ConfigurationError(BackfillError):
    """A setting is missing or invalid (environment, pyproject, Spark, jars)."""

    exit_code = 2


class InvalidRequestError(BackfillError):
    """The backfill request itself is wrong: dates, range, policy, concurrency."""

    exit_code = 2


class RangeTooLargeError(InvalidRequestError):
    """More partitions than the safety cap, without an explicit confirmation."""


class UnknownPipelineError(BackfillError):
    """No pipeline of that name is registered."""

    exit_code = 2


class PipelineDefinitionError(BackfillError):
    """A pipeline definition is invalid: names, columns, grain, checks. Fixed in the definition, like a usage error."""

    exit_code = 2


class SchemaChangeError(PipelineDefinitionError):
    """A new transform version changes the target's schema in a way the partitions not reprocessed cannot
    live with (a column dropped, a type changed other than widened): refused before anything is written
    (:mod:`prefect_backfill.schema_change`)."""


class ServerStartError(BackfillError):
    """Prefect's embedded server, started by ``backfill run`` (no ``PREFECT_API_URL``), did not answer."""


class CatalogUnavailableError(BackfillError):
    """The metastore of ``BACKFILL_METASTORE_URI`` did not answer where a catalog table's files are."""


class SourceNotFoundError(BackfillError):
    """The pipeline's source table does not exist."""


class TableUnreadableError(BackfillError):
    """A source or target table cannot be read although its store answers: no permission on its prefix or
    folder, a store that refuses it. Said before anything is planned or written."""


class TransformError(BackfillError):
    """The pipeline's transform failed before any partition ran (e.g. while the target was created)."""


class TargetLayoutError(BackfillError):
    """The target exists but cannot be overwritten partition by partition."""


class LedgerError(BackfillError):
    """The progress ledger (or its lease table) cannot be read or written: corrupt, missing rights."""


class CoordinationTimeoutError(BackfillError):
    """Gave up waiting for another live run: its partition claims, the claims lock or the pipeline's cap."""

    exit_code = 4


class CanaryStoppedError(BackfillError):
    """The run stopped at the canary gate: rejected, or nobody answered in time. Its canaries are written
    (``backfill undo`` restores them); the rest of the range was not started."""

    exit_code = 5


class PartitionError(BackfillError):
    """A single partition failed; the other partitions go on."""


class PartitionValidationError(PartitionError):
    """The partition's output failed a check; its old data is untouched. Retrying cannot help.

    ``partitions`` names the culprits when the check knows them (an empty output of one day inside a
    chunk of thirty); empty means "somewhere in this chunk", and the chunk is split to find out.
    """

    #: The name of the check that failed (the ledger's ``check_name``); subclasses name their own.
    check: str | None = None

    def __init__(
        self,
        message: str,
        partitions: tuple[str, ...] = (),
        details: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.partitions = partitions
        #: Per culprit partition: (check name, its own one-line error), when they differ between partitions.
        self.details = dict(details or {})

    def detail(self, partition: str) -> tuple[str | None, str]:
        """(check name, error) of one culprit partition."""
        return self.details.get(partition, (self.check, str(self)))

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with its culprits (Dask, result storage)
        return (type(self), (str(self), self.partitions, self.details))


class EmptySourcePartitionError(PartitionValidationError):
    """The source partition has no rows; overwriting would silently empty the target partition."""

    check = "non_empty_source"


class EmptyOutputError(PartitionValidationError):
    """The transform returned no rows for a source partition that has rows; the old rows are kept."""

    check = "non_empty_output"


class RowsOutsidePartitionError(PartitionValidationError):
    """The transform wrote rows outside the partitions being replaced (Delta's replaceWhere check)."""

    check = "rows_in_partition"


class CheckFailedError(PartitionValidationError):
    """A pipeline's declared check (``prefect_backfill.checks``) failed before the commit; old rows kept."""

    check = "checks"


class EngineError(BackfillError):
    """The engine (Spark, Delta) failed, classified once, where its errors leave it
    (:func:`prefect_backfill.engine.failures.engine_error`): everything above catches these types and
    reads ``kind``, never the engine's own error text. ``cause`` is the root cause in one line; the
    engine's exception is chained as ``__cause__`` (the trace file keeps it whole)."""

    kind: ClassVar[FailureKind] = FailureKind.DETERMINISTIC

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class EngineCancelledError(EngineError):
    """The engine's work was cancelled on purpose (a stop signal, the window's hard stop, the Spark UI):
    nothing was committed."""

    kind = FailureKind.CANCELLED


class EngineDownError(EngineError):
    """The engine is gone (the Spark driver died, the Connect server is unreachable)."""

    kind = FailureKind.ENGINE_DOWN


class CommitConflictError(EngineError):
    """A concurrent commit to the target conflicted with ours (Delta's optimistic concurrency): nothing
    was committed; retried."""

    kind = FailureKind.TRANSIENT


class TransientEngineError(EngineError):
    """Any other engine failure (a lost executor, a timeout, one we do not know): retried."""

    kind = FailureKind.TRANSIENT


class DeterministicEngineError(EngineError):
    """The same input fails the same way (a UDF raised, an analysis or schema error, a refused write)."""

    kind = FailureKind.DETERMINISTIC


class BackfillFailedError(BackfillError):
    """Raised at the end of a backfill in which some partitions failed.

    Carries the failed partition keys so callers (CLI, tests, other flows) can act on them, and a
    message that names each one, its error, and the exact command that resumes.
    """

    def __init__(
        self,
        pipeline: str,
        failures: Sequence[tuple[str, str]],
        resume_command: str,
        traces: str | None = None,
        spark_log: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.failed = tuple(key for key, _ in failures)
        self.errors = dict(failures)
        self.resume_command = resume_command
        self.traces = traces
        self.spark_log = spark_log
        shown = "; ".join(f"{key}: {error}" for key, error in failures[:20])
        more = f"; … and {len(failures) - 20} more" if len(failures) > 20 else ""
        where = f" Full traces: {traces}" if traces else ""
        where += f" Spark's own output: {spark_log}" if spark_log else ""
        super().__init__(
            f"{len(failures)} partition(s) of {pipeline} failed ({shown}{more}). Resume with: {resume_command}{where}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.pipeline, tuple(self.errors.items()), self.resume_command, self.traces, self.spark_log),
        )


class RunStoppedError(BackfillError):
    """A signal stopped the run (Ctrl-C, a worker cancelling its flow run): the flow run ends Cancelled
    with this as its data. Nothing failed: the partitions not written stay PENDING and the same command
    resumes. Carries the run's summary (what was done) and the signal's exit code (130, 143)."""

    def __init__(self, message: str, summary: BackfillSummary, exit_code: int) -> None:
        self.summary = summary
        self.exit_code = exit_code
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.summary, self.exit_code))


class ChunkFailedError(PartitionError):
    """Some partitions of a chunk failed; carries what happened to each one (the others completed),
    so the flow records and reports them exactly as if they had run one task each."""

    def __init__(self, result: ChunkResult) -> None:
        self.result = result
        shown = "; ".join(f"{key}: {error}" for key, error in result.failed[:5])
        super().__init__(f"{len(result.failed)} of the chunk's partitions failed ({shown})")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Dask) and into result storage
        return (type(self), (self.result,))


class UndoRefusedError(BackfillError):
    """An undo left partitions as they were (touched later, vacuumed, not written by the run); the others
    were restored. Carries the refused keys and their reasons."""

    def __init__(self, pipeline: str, run_id: str, refused: Sequence[tuple[str, str]], restored: int) -> None:
        self.pipeline, self.run_id, self.restored = pipeline, run_id, restored
        self.refused = tuple(key for key, _ in refused)
        self.reasons = dict(refused)
        shown = "; ".join(f"{key}: {reason}" for key, reason in refused[:10])
        more = f"; … and {len(refused) - 10} more" if len(refused) > 10 else ""
        super().__init__(
            f"undo of run {run_id} of {pipeline} restored {restored} partition(s) and refused {len(refused)} "
            f"({shown}{more})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.pipeline, self.run_id, list(self.reasons.items()), self.restored))


def one_line(exc: BaseException, limit: int = 500) -> str:
    """An error as one short line for the ledger and the summary (Spark errors span pages)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if not isinstance(exc, BackfillError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
