"""What a chunk's error means, decided once, here at the engine boundary: the chunk executor acts on the
kind (retry, isolate, stop) and records the root cause; nothing above reads an error's text.

- ``CANCELLED``: a Spark job cancelled on purpose (a stop signal, the window's hard stop, the Spark UI):
  nothing was committed; back to PENDING, never retried.
- ``ENGINE_DOWN``: the Spark driver is gone; every further attempt fails the same way.
- ``DETERMINISTIC``: the same input fails the same way (the transform or a UDF raised, an analysis or
  schema error, a permission refused): retrying only costs time; a chunk is bisected without retries to
  find its failing partitions.
- ``TRANSIENT``: anything else (a lost executor, a timeout, a concurrent Delta commit): retried with
  backoff. Unknown errors land here on purpose: a retry too many costs seconds, a retry too few a night.

The root cause of a Java error is its deepest "Caused by" (``java.nio.file.AccessDeniedException: …``),
not py4j's "An error occurred while calling o2397.save." above 9,000 lines of trace.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Failure", "FailureKind", "classify"]

_LIMIT = 500


class FailureKind(enum.StrEnum):
    CANCELLED = "cancelled"
    ENGINE_DOWN = "engine_down"
    DETERMINISTIC = "deterministic"
    TRANSIENT = "transient"


@dataclass(frozen=True)
class Failure:
    """An error's kind and its root cause, in one line."""

    kind: FailureKind
    cause: str

    @property
    def retried(self) -> bool:
        return self.kind is FailureKind.TRANSIENT


# Spark error conditions (pyspark's getCondition()): prefixes, matched on the condition name only.
_CANCELLED = ("SPARK_JOB_CANCELLED", "OPERATION_CANCELED", "INTERRUPTED")
_TRANSIENT = ("DELTA_CONCURRENT", "CONCURRENT_", "DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")
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
)
_JAVA_TRANSIENT = ("io.delta.exceptions.Concurrent", "java.util.ConcurrentModificationException")
# What the OS says when a write is refused: only in a Java exception's message (no errno crosses py4j).
_REFUSED = ("Permission denied", "Operation not permitted", "Read-only file system")


def classify(exc: BaseException) -> Failure:
    """The kind of ``exc`` and its root cause (see the module docstring)."""
    from prefect_backfill.errors import BackfillError

    name = type(exc).__name__
    if name in ("Py4JNetworkError",) or isinstance(exc, ConnectionError):
        return Failure(FailureKind.ENGINE_DOWN, _line(exc))
    condition = _condition(exc)
    if condition is not None:
        if condition.startswith(_CANCELLED):
            return Failure(FailureKind.CANCELLED, _line(exc))
        if condition.startswith(_TRANSIENT):
            return Failure(FailureKind.TRANSIENT, _line(exc))
        if condition.startswith(_DETERMINISTIC) or any(part in condition for part in _DETERMINISTIC):
            return Failure(FailureKind.DETERMINISTIC, _line(exc))
    if name in ("PythonException", "AnalysisException") or isinstance(exc, BackfillError):
        return Failure(FailureKind.DETERMINISTIC, _line(exc))
    chain = _java_chain(exc)
    if chain is None:  # a py4j error whose JVM cannot be asked: gone
        return Failure(FailureKind.ENGINE_DOWN, _line(exc))
    if chain:
        classes = [link.cls for link in chain]
        conditions = [link.condition for link in chain if link.condition]
        root = f"{chain[-1].cls}: {chain[-1].message}".strip().rstrip(":")
        root = _clip(root.splitlines()[0] if root else _line(exc))
        if any(c.startswith(_CANCELLED) for c in conditions):
            return Failure(FailureKind.CANCELLED, root)
        if any(cls.startswith(_JAVA_TRANSIENT) for cls in classes) or any(c.startswith(_TRANSIENT) for c in conditions):
            return Failure(FailureKind.TRANSIENT, root)
        if (
            any(cls in _JAVA_DETERMINISTIC for cls in classes)
            or any(part in c for c in conditions for part in _DETERMINISTIC)
            or any(refused in link.message for link in chain for refused in _REFUSED)
        ):
            return Failure(FailureKind.DETERMINISTIC, root)
        return Failure(FailureKind.TRANSIENT, root)
    return Failure(FailureKind.TRANSIENT, _line(exc))


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
    from prefect_backfill.errors import one_line

    return one_line(exc, _LIMIT)


def _clip(text: str) -> str:
    return text if len(text) <= _LIMIT else text[: _LIMIT - 1] + "…"
