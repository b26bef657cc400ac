"""Errors classified once at the engine boundary (prefect_backfill.engine.failures), on stand-ins shaped
like pyspark's and py4j's own errors; the integration tests raise the real ones."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from py4j.protocol import Py4JNetworkError

from prefect_backfill.engine.failures import FailureKind, classify, engine_error
from prefect_backfill.errors import (
    BackfillError,
    CommitConflictError,
    DeterministicEngineError,
    EngineCancelledError,
    EngineDownError,
    RowsOutsidePartitionError,
    TransformError,
    TransientEngineError,
)


class Conditioned(Exception):
    """Like pyspark's captured exceptions: an error condition."""

    def __init__(self, condition: str, message: str = "boom") -> None:
        super().__init__(message)
        self.condition = condition

    def getCondition(self) -> str:
        return self.condition


@dataclass
class JavaClass:
    name: str

    def getName(self) -> str:
        return self.name


@dataclass
class JavaThrowable:
    cls: str
    message: str
    cause: JavaThrowable | None = None

    def getClass(self) -> JavaClass:
        return JavaClass(self.cls)

    def getMessage(self) -> str:
        return self.message

    def getCause(self) -> JavaThrowable | None:
        return self.cause

    def equals(self, other: object) -> bool:
        return other is self


class Py4JJavaError(Exception):
    def __init__(self, java: JavaThrowable) -> None:
        super().__init__("An error occurred while calling o2397.save.")
        self.java_exception = java


def test_a_refused_write_is_deterministic_and_its_root_cause_is_one_line() -> None:
    java = JavaThrowable(
        "org.apache.spark.SparkException",
        "Job aborted.",
        JavaThrowable(
            "java.io.IOException", "Mkdirs failed", JavaThrowable("java.io.IOException", "Operation not permitted")
        ),
    )
    failure = classify(Py4JJavaError(java))
    assert failure.kind is FailureKind.DETERMINISTIC and not failure.retried
    assert failure.cause == "java.io.IOException: Operation not permitted"  # not "An error occurred while calling"


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (Conditioned("SPARK_JOB_CANCELLED"), FailureKind.CANCELLED),
        (Conditioned("DELTA_CONCURRENT_APPEND"), FailureKind.TRANSIENT),
        (Conditioned("DELTA_METADATA_MISMATCH"), FailureKind.DETERMINISTIC),
        (Conditioned("USER_RAISED_EXCEPTION"), FailureKind.DETERMINISTIC),
        (Conditioned("UNRESOLVED_COLUMN.WITH_SUGGESTION"), FailureKind.DETERMINISTIC),
        (Conditioned("CAST_INVALID_INPUT"), FailureKind.DETERMINISTIC),
        (TransformError("the transform of p raised ValueError: no"), FailureKind.DETERMINISTIC),
        (Py4JNetworkError("Answer from Java side is empty"), FailureKind.ENGINE_DOWN),
        (ConnectionRefusedError(111, "Connection refused"), FailureKind.ENGINE_DOWN),
        (
            Py4JJavaError(JavaThrowable("io.delta.exceptions.ConcurrentAppendException", "Files were added")),
            FailureKind.TRANSIENT,
        ),
        (
            Py4JJavaError(
                JavaThrowable(
                    "org.apache.spark.SparkException",
                    "Job aborted due to stage failure",
                    JavaThrowable("org.apache.spark.api.python.PythonException", "ZeroDivisionError"),
                )
            ),
            FailureKind.DETERMINISTIC,
        ),
        (
            Py4JJavaError(JavaThrowable("org.apache.spark.SparkException", "ExecutorLostFailure (executor 1 exited)")),
            FailureKind.TRANSIENT,
        ),
        (RuntimeError("something we do not know"), FailureKind.TRANSIENT),  # unknown: retried, on purpose
    ],
)
def test_each_error_is_classified_by_its_type_condition_or_java_class(error: Exception, kind: FailureKind) -> None:
    assert classify(error).kind is kind


def test_a_java_error_whose_jvm_is_gone_is_engine_down() -> None:
    class Gone:
        def getClass(self) -> JavaClass:
            raise Py4JNetworkError("Error while sending or receiving")

    error = Py4JJavaError(JavaThrowable("x", "y"))
    error.java_exception = Gone()  # type: ignore[assignment]
    assert classify(error).kind is FailureKind.ENGINE_DOWN


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (Conditioned("SPARK_JOB_CANCELLED"), EngineCancelledError),
        (Py4JNetworkError("Answer from Java side is empty"), EngineDownError),
        (Conditioned("DELTA_CONCURRENT_APPEND"), CommitConflictError),
        (
            Py4JJavaError(JavaThrowable("io.delta.exceptions.ConcurrentAppendException", "Files were added")),
            CommitConflictError,
        ),
        (Conditioned("DELTA_REPLACE_WHERE_MISMATCH"), RowsOutsidePartitionError),
        (
            Py4JJavaError(
                JavaThrowable(
                    "org.apache.spark.SparkException",
                    "Job aborted",
                    JavaThrowable("org.apache.spark.sql.delta.DeltaAnalysisException", "x"),
                )
            ),
            TransientEngineError,  # a Java class we do not know, no condition: retried
        ),
        (Conditioned("USER_RAISED_EXCEPTION"), DeterministicEngineError),
        (RuntimeError("something we do not know"), TransientEngineError),
    ],
)
def test_an_engine_error_becomes_the_packages_type_once_and_its_kind_follows_the_type(
    error: Exception, kind: type[BackfillError]
) -> None:
    typed = engine_error(error)
    assert type(typed) is kind
    assert engine_error(typed) is typed  # a package error is never classified again
    assert classify(typed).kind is classify(error).kind
    if isinstance(typed, RowsOutsidePartitionError):  # a failed check: deterministic, never retried
        assert classify(typed).kind is FailureKind.DETERMINISTIC and typed.check == "rows_in_partition"


def test_a_typed_engine_error_is_acted_on_by_its_type_whatever_its_words() -> None:
    """Rewording a cause (or an engine giving any text at all) changes no decision."""
    for words in ("", "boom", "cancelled as part of cancellation of all jobs", "Answer from Java side is empty"):
        assert classify(EngineCancelledError(words)).kind is FailureKind.CANCELLED
        assert classify(EngineDownError(words)).kind is FailureKind.ENGINE_DOWN
        assert classify(CommitConflictError(words)).kind is FailureKind.TRANSIENT
        assert classify(DeterministicEngineError(words)).kind is FailureKind.DETERMINISTIC
        assert classify(TransientEngineError(words)).kind is FailureKind.TRANSIENT
        assert classify(EngineDownError(words)).cause == words
