"""One error hierarchy for everything a user can get wrong or a run can hit.

Every message is a single line that says what is wrong and how to fix it, because the CLI prints
``str(error)`` as is and Prefect shows it as the flow run's failure message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect_backfill.results import BatchResult

__all__ = [
    "BackfillError",
    "BackfillFailedError",
    "BatchFailedError",
    "ConfigurationError",
    "EmptySourcePartitionError",
    "InvalidRequestError",
    "PartitionError",
    "PartitionValidationError",
    "PipelineDefinitionError",
    "RangeTooLargeError",
    "SourceNotFoundError",
    "TargetLayoutError",
    "UnknownPipelineError",
]


class BackfillError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigurationError(BackfillError):
    """A setting is missing or invalid (environment, pyproject, Spark, jars)."""


class InvalidRequestError(BackfillError):
    """The backfill request itself is wrong: dates, range, policy, concurrency."""


class RangeTooLargeError(InvalidRequestError):
    """More partitions than the safety cap, without an explicit confirmation."""


class UnknownPipelineError(BackfillError):
    """No pipeline of that name is registered."""


class PipelineDefinitionError(BackfillError):
    """A pipeline definition is invalid: names, columns, grain."""


class SourceNotFoundError(BackfillError):
    """The pipeline's source table does not exist."""


class TargetLayoutError(BackfillError):
    """The target exists but cannot be overwritten partition by partition."""


class PartitionError(BackfillError):
    """A single partition failed; the other partitions go on."""


class PartitionValidationError(PartitionError):
    """The partition's output failed a check; its old data is untouched. Retrying cannot help."""


class EmptySourcePartitionError(PartitionValidationError):
    """The source partition has no rows; overwriting would silently empty the target partition."""


class BackfillFailedError(BackfillError):
    """Raised at the end of a backfill in which some partitions failed.

    Carries the failed partition keys so callers (CLI, tests, other flows) can act on them, and a
    message that names each one, its error, and the exact command that resumes.
    """

    def __init__(self, pipeline: str, failures: Sequence[tuple[str, str]], resume_command: str) -> None:
        self.pipeline = pipeline
        self.failed = tuple(key for key, _ in failures)
        self.errors = dict(failures)
        self.resume_command = resume_command
        shown = "; ".join(f"{key}: {error}" for key, error in failures[:20])
        more = f"; … and {len(failures) - 20} more" if len(failures) > 20 else ""
        super().__init__(
            f"{len(failures)} partition(s) of {pipeline} failed ({shown}{more}). Resume with: {resume_command}"
        )


class BatchFailedError(PartitionError):
    """Some partitions of a batch failed; carries what happened to each one (the others completed),
    so the flow records and reports them exactly as if they had run one task each."""

    def __init__(self, result: BatchResult) -> None:
        self.result = result
        shown = "; ".join(f"{key}: {error}" for key, error in result.failed[:5])
        super().__init__(f"{len(result.failed)} of the batch's partitions failed ({shown})")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across processes (Dask) and into result storage
        return (type(self), (self.result,))
