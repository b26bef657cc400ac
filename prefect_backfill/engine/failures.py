"""What an engine error means, decided once, here at the engine boundary: :func:`engine_error` turns
Spark's and Delta's errors into the package's types (:class:`~prefect_backfill.errors.EngineError` and
its kinds, :class:`~prefect_backfill.errors.RowsOutsidePartitionError`); the engine raises those, and
everything above catches types. :func:`classify` gives the chunk executor the kind of any error (retry,
isolate, stop) and its root cause; nothing above reads an error's text.

- cancelled (:class:`~prefect_backfill.errors.EngineCancelledError`): a Spark job cancelled on purpose
  (a stop signal, the window's hard stop, the Spark UI): nothing was committed; back to PENDING, never retried.
- engine down (:class:`~prefect_backfill.errors.EngineDownError`): the Spark driver is gone; every further
  attempt fails the same way.
- rows outside the partition (:class:`~prefect_backfill.errors.RowsOutsidePartitionError`): Delta's
  replaceWhere check refused the write; nothing was committed.
- commit conflict (:class:`~prefect_backfill.errors.CommitConflictError`): a concurrent Delta commit; retried.
- deterministic: the same input fails the same way (the transform or a UDF raised, an analysis or schema
  error, a permission refused): retrying only costs time; a chunk is bisected without retries to find
  its failing partitions.
- transient: anything else (a lost executor, a timeout): retried with backoff. Unknown errors land here
  on purpose: a retry too many costs seconds, a retry too few a night.

What is read, in this order: Python exception types (pyspark's, py4j's), Spark's error conditions
(``getCondition()``: structured codes, matched by prefix), and the Java cause chain's exception classes and
conditions. The root cause of a Java error is its deepest "Caused by" (``java.nio.file.AccessDeniedException:
…``), not py4j's "An error occurred while calling o2397.save." above 9,000 lines of trace.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from dataclasses import dataclass

from prefect_backfill.errors import (
    BackfillError,
    CommitConflictError,
    DeterministicEngineError,
    EngineCancelledError,
    EngineDownError,
    EngineError,
    FailureKind,
    RowsOutsidePartitionError,
    TransientEngineError,
    one_line,
)

__all__ = ["Failure", "FailureKind", "classify", "engine_error", "engine_errors"]

_LIMIT = 500


@dataclass(frozen=True)
class Failure:
    """An error's kind and its root cause, in one line."""

    kind: FailureKind
    cause: str

    @property
    def retried(self) -> bool:
        return self.kind is FailureKind.TRANSIENT


class _Verdict(enum.Enum):
    """What an engine error is: one package error type each."""

    CANCELLED = EngineCancelledError
    ENGINE_DOWN = EngineDownError
    CONFLICT = CommitConflictError
    DETERMINISTIC = DeterministicEngineError
    TRANSIENT = TransientEngineError
    ROWS_OUTSIDE = RowsOutsidePartitionError


# Spark error conditions (pyspark's getCondition()): prefixes, matched on the condition name only.
_CANCELLED = ("SPARK_JOB_CANCELLED", "OPERATION_CANCELED", "INTERRUPTED")
_CONFLICT = ("DELTA_CONCURRENT", "CONCURRENT_", "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")
_ROWS_OUTSIDE = ("DELTA_REPLACE_WHERE_MISMATCH",)
_DETERMINISTIC = (
    "USER_RAISED_EXCEPTION",
    "DELTA_METADATA_MISMATCH",
    "DELTA_FAILED_TO_MERGE_FIELDS",
    "DELTA_SCHEMA",
    "_SCHEMA_MISMATCH",
    "UNRESOLVED_",
    "DATATYPE_MISMATCH",
    "CAST_",
    "DIVIDE_BY_ZERO",
    "ARITHMETIC_OVERFLOW",
    "INSUFFICIENT_PERMISSIONS",
    "PERMISSION_DENIED",
)
# Java exception classes anywhere in the cause chain (by class name, the JVM's own type information).
_JAVA_DETERMINISTIC = (
    "java.nio.file.AccessDeniedException",
    "org.apache.hadoop.security.AccessControlException",
    "java.lang.SecurityException",
    "org.apache.spark.sql.AnalysisException",
    "org.apache.spark.api.python.PythonException",
    # Hadoop S3A: no such bucket, a request the store refuses as malformed (403s arrive as AccessDeniedException).
    # Throttling (503) and connection failures stay transient: S3A retries them with backoff, then so do we.
    "org.apache.hadoop.fs.s3a.UnknownStoreException",
    "org.apache.hadoop.fs.s3a.AWSBadRequestException",
)
_JAVA_CONFLICT = ("io.delta.exceptions.Concurrent",)
_JAVA_TRANSIENT = ("java.util.ConcurrentModificationException",)
# What the OS says when a write is refused. The one message read here: the JVM gets it as the text of an
# IOException (no errno crosses py4j), so there is no structured code to read instead.
_REFUSED = ("Permission denied", "Operation not permitted", "Read-only file system")


def classify(exc: BaseException) -> Failure:
    """The kind of ``exc`` and its root cause: an :class:`EngineError`'s own; any other package error is
    deterministic; an engine error not classified yet (another engine's) is classified here."""
    error = engine_error(exc)
    if isinstance(error, EngineError):
        return Failure(error.kind, error.cause)
    return Failure(FailureKind.DETERMINISTIC, _line(error))


def engine_error(exc: BaseException) -> BackfillError:
    """``exc`` as the package's error type (see the module docstring); a package error as it is. The one
    place where an engine error is classified: raise the result ``from exc``."""
    if isinstance(exc, BackfillError):
        return exc
    verdict, cause = _verdict(exc)
    if verdict is _Verdict.ROWS_OUTSIDE:
        return RowsOutsidePartitionError(
            f"the transform wrote rows outside the partitions being replaced; nothing was committed ({cause})"
        )
    error: BackfillError = verdict.value(cause)
    return error


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Around engine work: an error leaves the block as the package's type (:func:`engine_error`), the
    engine's own chained as its cause; the package's errors and BaseExceptions (a stop) leave as they are."""
    try:
        yield
    except BackfillError:
        raise
    except Exception as exc:
        raise engine_error(exc) from exc


def _verdict(exc: BaseException) -> tuple[_Verdict, str]:
    from py4j.protocol import Py4JNetworkError
    from pyspark.errors import AnalysisException, PythonException

    if isinstance(exc, Py4JNetworkError | ConnectionError):
        return _Verdict.ENGINE_DOWN, _line(exc)
    condition = _condition(exc)
    if condition is not None and (verdict := _by_conditions([condition], [])) is not None:
        return verdict, _line(exc)
    if isinstance(exc, PythonException | AnalysisException):
        return _Verdict.DETERMINISTIC, _line(exc)
    chain = _java_chain(exc)
    if chain is None:  # a py4j error whose JVM cannot be asked: gone
        return _Verdict.ENGINE_DOWN, _line(exc)
    if not chain:
        return _Verdict.TRANSIENT, _line(exc)
    root = f"{chain[-1].cls}: {chain[-1].message}".strip().rstrip(":")
    root = _clip(root.splitlines()[0] if root else _line(exc))
    conditions = [link.condition for link in chain if link.condition]
    verdict = _by_conditions(conditions, [link.cls for link in chain])
    if verdict is None and any(refused in link.message for link in chain for refused in _REFUSED):
        verdict = _Verdict.DETERMINISTIC
    return verdict or _Verdict.TRANSIENT, root


def _by_conditions(conditions: list[str], classes: list[str]) -> _Verdict | None:
    """What Spark's error conditions and the Java exception classes of a cause chain say, most telling
    first; None if they say nothing we know."""
    if any(c.startswith(_CANCELLED) for c in conditions):
        return _Verdict.CANCELLED
    if any(c.startswith(_ROWS_OUTSIDE) for c in conditions):
        return _Verdict.ROWS_OUTSIDE
    if any(c.startswith(_CONFLICT) for c in conditions) or any(cls.startswith(_JAVA_CONFLICT) for cls in classes):
        return _Verdict.CONFLICT
    if any(cls.startswith(_JAVA_TRANSIENT) for cls in classes):
        return _Verdict.TRANSIENT
    if any(part in c for c in conditions for part in _DETERMINISTIC) or any(
        cls in _JAVA_DETERMINISTIC for cls in classes
    ):
        return _Verdict.DETERMINISTIC
    return None


def _condition(exc: BaseException) -> str | None:
    get = getattr(exc, "getCondition", None) or getattr(exc, "getErrorClass", None)
    if get is None:
        return None
    try:
        condition = get()
    except Exception:
        return None
    return str(condition) if condition else None


@dataclass(frozen=True)
class _Link:
    """One Java exception of a cause chain: its class, message and Spark error condition (if any)."""

    cls: str
    message: str
    condition: str | None


def _java_chain(exc: BaseException) -> list[_Link] | None:
    """A Py4JJavaError's Java exception and every cause under it, outermost first; [] if ``exc`` carries
    no Java exception; None if it does but the JVM cannot be asked (it is gone)."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return []
    chain: list[_Link] = []
    try:
        while java is not None and len(chain) < 32:
            chain.append(_Link(str(java.getClass().getName()), str(java.getMessage() or ""), _condition(java)))
            cause = java.getCause()
            java = None if cause is None or cause.equals(java) else cause
    except Exception:
        return chain or None
    return chain


def _line(exc: BaseException) -> str:
    return one_line(exc, _LIMIT)


def _clip(text: str) -> str:
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"
