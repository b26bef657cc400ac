"""Checks before commit: what a partition's output must satisfy before it may replace the old rows.

A pipeline declares them as values (``Pipeline(checks=(RowRatio(0.9, 1.1), NotNull("order_id"), …))``).
Every check but :class:`Custom` is one or two aggregate expressions, evaluated in the grouped count that
the chunk runs anyway to count each partition's rows (``engine.delta.process_chunk``): declarative checks
cost no extra pass over the data, only wider aggregation (:class:`Unique` adds a distinct count, i.e. a
shuffle of the key columns). A failed check fails exactly its partitions, as a validation failure (never
retried: the same input gives the same answer), before anything is committed; the ledger records the
check's name, and the error says what was observed and what was expected.

Expressions (:class:`Expect`) are parsed by Spark's own parser (``functions.expr``) into a Column and
validated against the transform's output schema before the first partition runs, never spliced into SQL
text. As in SQL ``CHECK`` constraints, a row where the expression is NULL passes: add :class:`NotNull`
for the columns it reads if NULL is wrong too.

Evaluation is pure (:func:`evaluate`): the engine hands in the aggregated values per partition.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefect_backfill.errors import PipelineDefinitionError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "Check",
    "Custom",
    "Expect",
    "Failure",
    "NotNull",
    "RowRatio",
    "Unique",
    "evaluate",
    "validate",
]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Failure:
    """One partition that did not pass one check."""

    partition: str
    check: str
    observed: str
    expected: str

    def __str__(self) -> str:
        return f"{self.check}: {self.observed}" + (f", expected {self.expected}" if self.expected else "")


def _column(value: str, what: str) -> str:
    if not isinstance(value, str) or not _COLUMN.match(value):
        raise PipelineDefinitionError(f"{what} {value!r} is not a plain column name: use letters, digits, underscores")
    return value


@dataclass(frozen=True, slots=True)
class RowRatio:
    """Rows out / rows in of each partition within ``[min, max]`` (either may be None): a filter that
    drops half the rows, or a join that doubles them, stops here."""

    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.min is None and self.max is None:
            raise PipelineDefinitionError("RowRatio needs min or max (e.g. RowRatio(0.95, 1.05))")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PipelineDefinitionError(f"RowRatio: min {self.min} is above max {self.max}")

    @property
    def name(self) -> str:
        return "row_ratio"

    def columns(self) -> tuple[str, ...]:
        return ()

    def expected(self) -> str:
        if self.min is not None and self.max is not None:
            return f"rows out/in between {self.min:g} and {self.max:g}"
        return f"rows out/in ≥ {self.min:g}" if self.min is not None else f"rows out/in ≤ {self.max:g}"


@dataclass(frozen=True, slots=True)
class NotNull:
    """No NULL in any of ``columns``."""

    columns_: tuple[str, ...]

    def __init__(self, *columns: str) -> None:
        if not columns:
            raise PipelineDefinitionError("NotNull needs at least one column")
        object.__setattr__(self, "columns_", tuple(_column(c, "NotNull column") for c in columns))

    @property
    def name(self) -> str:
        return f"not_null:{','.join(self.columns_)}"

    def columns(self) -> tuple[str, ...]:
        return self.columns_


@dataclass(frozen=True, slots=True)
class Unique:
    """No two rows of a partition share the key ``columns`` (rows with a NULL key part are not counted,
    as in SQL; add NotNull for them)."""

    columns_: tuple[str, ...]

    def __init__(self, *columns: str) -> None:
        if not columns:
            raise PipelineDefinitionError("Unique needs at least one key column")
        object.__setattr__(self, "columns_", tuple(_column(c, "Unique column") for c in columns))

    @property
    def name(self) -> str:
        return f"unique:{','.join(self.columns_)}"

    def columns(self) -> tuple[str, ...]:
        return self.columns_


@dataclass(frozen=True, slots=True)
class Expect:
    """Every row satisfies the boolean ``expression`` over output columns, e.g. ``amount_usd >= 0``.
    Parsed by Spark's parser and checked against the output's schema before the first partition runs."""

    expression: str
    label: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.expression, str) or not self.expression.strip():
            raise PipelineDefinitionError("Expect needs a boolean expression, e.g. Expect('amount_usd >= 0')")
        if self.label is not None and not _NAME.match(self.label):
            raise PipelineDefinitionError(f"Expect label {self.label!r}: use letters, digits, '_', '.', ':', '-'")

    @property
    def name(self) -> str:
        return self.label or f"expect:{' '.join(self.expression.split())}"

    def columns(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, slots=True)
class Custom:
    """Anything else: ``fn(output)`` gets the chunk's output (a DataFrame, persisted: reading it again
    costs no transform) and returns ``{partition value or key: message}`` for the partitions that fail;
    an empty mapping passes. One extra job per chunk, however many partitions it holds."""

    label: str
    fn: Callable[[DataFrame], Mapping[Any, str]]

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not _NAME.match(self.label):
            raise PipelineDefinitionError(f"Custom check label {self.label!r}: use letters, digits, '_', '.', ':', '-'")
        if not callable(self.fn):
            raise PipelineDefinitionError(f"Custom check {self.label}: fn must be a function DataFrame -> mapping")

    @property
    def name(self) -> str:
        return self.label

    def columns(self) -> tuple[str, ...]:
        return ()


Check = RowRatio | NotNull | Unique | Expect | Custom


def validate(
    checks: Sequence[Check], pipeline: str, output_columns: Sequence[str], parse: Callable[[str], None]
) -> None:
    """Refuse, with one line, a check on a column the output does not have or an expression Spark cannot
    parse and resolve against the output (``parse`` raises for those). Run before anything is written."""
    available = set(output_columns)
    names: set[str] = set()
    for check in checks:
        if check.name in names:
            raise PipelineDefinitionError(f"pipeline {pipeline}: two checks are named {check.name}: label one of them")
        names.add(check.name)
        missing = [c for c in check.columns() if c not in available]
        if missing:
            raise PipelineDefinitionError(
                f"pipeline {pipeline}: check {check.name} names column {missing[0]!r}, which the transform's output "
                f"does not have (it has {', '.join(sorted(available))})"
            )
        if isinstance(check, Expect):
            try:
                parse(check.expression)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                raise PipelineDefinitionError(
                    f"pipeline {pipeline}: check {check.name} is not a boolean expression over the output's columns "
                    f"({first})"
                ) from None


def evaluate(
    checks: Sequence[Check],
    partition: str,
    rows_in: int,
    rows_out: int,
    values: Mapping[str, Any],
) -> list[Failure]:
    """Which of ``checks`` partition ``partition`` fails, from its aggregated ``values`` (see
    :func:`prefect_backfill.engine.measures.aggregates`). :class:`Custom` checks are evaluated by the
    engine, not here."""
    failures: list[Failure] = []
    for i, check in enumerate(checks):
        if isinstance(check, RowRatio):
            if rows_in == 0:
                continue  # an empty source is its own check (allow_empty)
            ratio = rows_out / rows_in
            if (check.min is not None and ratio < check.min) or (check.max is not None and ratio > check.max):
                observed = f"{rows_out:,} rows out of {rows_in:,} in ({ratio:.3g})"
                failures.append(Failure(partition, check.name, observed, check.expected()))
        elif isinstance(check, NotNull):
            bad = int(values.get(f"_bf_c{i}_bad") or 0)
            if bad:
                failures.append(Failure(partition, check.name, f"{bad:,} row(s) with NULL", "none"))
        elif isinstance(check, Unique):
            duplicates = int(values.get(f"_bf_c{i}_keyed") or 0) - int(values.get(f"_bf_c{i}_distinct") or 0)
            if duplicates:
                failures.append(Failure(partition, check.name, f"{duplicates:,} duplicate key row(s)", "none"))
        elif isinstance(check, Expect):
            bad = int(values.get(f"_bf_c{i}_bad") or 0)
            if bad:
                failures.append(Failure(partition, check.name, f"{bad:,} row(s) where it is false", "none"))
    return failures
