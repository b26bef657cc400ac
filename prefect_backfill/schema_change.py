"""What a new transform version does to the target's schema, decided before anything is written.

A fix often changes the schema. A backfill rewrites some partitions and leaves the others as they are,
so a change must be one every partition can live with, old and new:

- **an added column**: the target gains it once, before the first chunk (one metadata commit, never a
  ``mergeSchema`` per chunk: parallel chunks would each change the metadata and conflict); reprocessed
  partitions have it, the others read it as NULL until they are reprocessed;
- **a widened type** (``int`` → ``bigint``, ``float`` → ``double``, ``date`` → ``timestamp_ntz``, a decimal
  with more digits): Delta's type widening changes the column in place; old files are read as the wider
  type without being rewritten. It is a table feature, a protocol upgrade that readers without it cannot
  read (delta-rs 1.x reads the log, not the data), so it is taken only where the pipeline says
  ``widen_types=True`` or the table has it on already, and refused with that said otherwise;
- **anything else is refused**, one line, nothing written: a column the target has and the output no
  longer does (its old values would stay in the partitions not reprocessed, NULL in the others), a type
  that is narrower or different, a change inside a struct, array or map. What to do is said with it.

``overwriteSchema`` is never used: on a partial overwrite it would give the whole table the new schema
while the partitions not reprocessed keep data of the old one.

Pure: schemas are compared as values (:class:`Column`); the engine reads them and applies the change.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ChangeKind",
    "Column",
    "ColumnChange",
    "SchemaChange",
    "columns_of",
    "compare",
    "is_widening",
    "shape_digest",
]


@dataclass(frozen=True, slots=True)
class Column:
    """A top-level column: its name and its type as Spark spells it (``bigint``, ``decimal(10,2)``,
    ``struct<a:int,b:string>``, …)."""

    name: str
    type: str


class ChangeKind(enum.StrEnum):
    ADDED = "added"  # the output has it, the target does not: the target gains it
    WIDENED = "widened"  # a wider type of the same kind: the column is widened in place
    DROPPED = "dropped"  # the target has it, the output does not: refused
    RETYPED = "retyped"  # another type that is not a widening: refused


@dataclass(frozen=True, slots=True)
class ColumnChange:
    kind: ChangeKind
    column: str
    old_type: str | None  # None for an added column
    new_type: str | None  # None for a dropped column

    def __str__(self) -> str:
        if self.kind is ChangeKind.ADDED:
            return f"adds {self.column} ({self.new_type})"
        if self.kind is ChangeKind.DROPPED:
            return f"no longer produces {self.column} ({self.old_type})"
        verb = "widens" if self.kind is ChangeKind.WIDENED else "changes"
        return f"{verb} {self.column} from {self.old_type} to {self.new_type}"


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """How the transform's output differs from the target, column by column (target order, then added)."""

    changes: tuple[ColumnChange, ...] = ()

    @property
    def added(self) -> tuple[ColumnChange, ...]:
        return tuple(c for c in self.changes if c.kind is ChangeKind.ADDED)

    @property
    def widened(self) -> tuple[ColumnChange, ...]:
        return tuple(c for c in self.changes if c.kind is ChangeKind.WIDENED)

    @property
    def refused(self) -> tuple[ColumnChange, ...]:
        return tuple(c for c in self.changes if c.kind in (ChangeKind.DROPPED, ChangeKind.RETYPED))

    def __bool__(self) -> bool:
        return bool(self.changes)

    def refusal(self, pipeline: str, target: str) -> str:
        """The one line that refuses it: what the version changes, and what to do instead."""
        what = "; ".join(str(c) for c in self.refused)
        fixes = []
        if any(c.kind is ChangeKind.DROPPED for c in self.refused):
            fixes.append(
                "keep producing a dropped column (F.lit(None).cast(<type>) if it is to be empty), or drop it from "
                "the target first (ALTER TABLE … DROP COLUMN, which needs column mapping)"
            )
        if any(c.kind is ChangeKind.RETYPED for c in self.refused):
            fixes.append(
                "cast the column back to the target's type in the transform, or write a new column (or a new "
                "target) with the new type"
            )
        return (
            f"the transform of {pipeline} {what}, which the target {target} cannot take partition by partition: "
            f"{'; or '.join(fixes)}; nothing was written"
        )

    def widening_refusal(self, pipeline: str, target: str) -> str:
        """The one line that refuses a widening the pipeline did not allow."""
        what = "; ".join(str(c) for c in self.widened)
        return (
            f"the transform of {pipeline} {what}: the target {target} takes it in place with Delta's type "
            "widening, a table feature that readers without it cannot read (delta-rs 1.x, Spark before Delta "
            "4.0); set widen_types=True on the pipeline to enable it, or cast back in the transform; nothing "
            "was written"
        )


_INTEGERS = ("tinyint", "smallint", "int", "bigint")
_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")


#: Digits before the point a decimal needs to hold every value of an integer type (Delta's minimum).
_INTEGER_DIGITS = {"tinyint": 10, "smallint": 10, "int": 10, "bigint": 20}


def is_widening(old: str, new: str) -> bool:
    """Whether Delta's type widening (Delta 4.x, docs: "Delta type widening") turns ``old`` into ``new``
    in place: an integer to a wider integer, ``tinyint``/``smallint``/``int`` or ``float`` to ``double``,
    an integer to a decimal with room for all its digits, ``date`` to ``timestamp_ntz``, a decimal to one
    with at least as many digits on each side of the point. Delta asks for these to be committed by hand
    (``ALTER COLUMN``), not by a write's schema evolution, which is how the package applies them."""
    if old in _INTEGERS and new in _INTEGERS:
        return _INTEGERS.index(new) > _INTEGERS.index(old)
    if (old, new) in {("float", "double"), ("date", "timestamp_ntz")}:
        return True
    if new == "double":
        return old in _INTEGERS[:3]
    b = _DECIMAL.fullmatch(new)
    if b is None:
        return False
    p2, s2 = int(b[1]), int(b[2])
    if old in _INTEGER_DIGITS:
        return p2 - s2 >= _INTEGER_DIGITS[old]
    a = _DECIMAL.fullmatch(old)
    if a is None:
        return False
    p1, s1 = int(a[1]), int(a[2])
    return (p2, s2) != (p1, s1) and s2 >= s1 and p2 - s2 >= p1 - s1


def compare(target: Sequence[Column], output: Sequence[Column]) -> SchemaChange:
    """The changes that writing ``output`` into ``target`` asks for. Names match case-insensitively,
    as Spark's do."""
    produced = {c.name.lower(): c for c in output}
    kept = {c.name.lower() for c in target}
    changes: list[ColumnChange] = []
    for column in target:
        new = produced.get(column.name.lower())
        if new is None:
            changes.append(ColumnChange(ChangeKind.DROPPED, column.name, column.type, None))
        elif new.type != column.type:
            kind = ChangeKind.WIDENED if is_widening(column.type, new.type) else ChangeKind.RETYPED
            changes.append(ColumnChange(kind, column.name, column.type, new.type))
    changes += [ColumnChange(ChangeKind.ADDED, c.name, None, c.type) for c in output if c.name.lower() not in kept]
    return SchemaChange(tuple(changes))


def shape_text(columns: Iterable[Column]) -> str:
    """What the ledger records of the shape a partition was written with: its columns' names and types as
    JSON, in name order (a Parquet column of repeated values, dictionary-encoded: a few bytes an event), so
    a run's diff can say which columns a partition gained (:func:`recorded_columns`)."""
    return json.dumps([[c.name, c.type] for c in sorted(columns, key=lambda c: (c.name.lower(), c.type))])


def recorded_columns(shape: str | None) -> list[Column] | None:
    """The columns of a recorded shape (:func:`shape_text`); None for none, or for a digest (what releases
    before it recorded: the columns cannot be told from it)."""
    if not shape or not shape.startswith("["):
        return None
    return [Column(str(name), str(kind)) for name, kind in json.loads(shape)]


def shape_key(shape: str) -> str:
    """A recorded shape as :func:`shape_digest` gives it, whether recorded as columns or (before) a digest."""
    columns = recorded_columns(shape)
    return shape if columns is None else shape_digest(columns)


def shape_digest(columns: Iterable[Column]) -> str:
    """A short digest of a table's or an output's shape (names and types, not order or nullability): the
    ledger records the shape each partition was written with, so ``status`` can count the partitions
    still of an older one."""
    shape = sorted((c.name.lower(), c.type) for c in columns)
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:12]


#: Delta's names of the primitive types (its log's schema JSON, which is Spark's) → Spark SQL's.
_SQL_NAMES = {"integer": "int", "long": "bigint", "short": "smallint", "byte": "tinyint"}


def columns_of(schema_json: str) -> list[Column]:
    """The top-level columns of a schema in the JSON of a Delta log's ``schemaString`` (which is Spark's
    ``StructType.json()``, and delta-rs's ``Schema.to_json()``): one reading for Spark's side and for
    delta-rs's, so they can never spell a type differently."""
    return [Column(str(f["name"]), _type_name(f["type"])) for f in json.loads(schema_json)["fields"]]


def _type_name(kind: Any) -> str:
    if isinstance(kind, str):
        return _SQL_NAMES.get(kind, kind)
    if kind["type"] == "struct":
        return "struct<" + ",".join(f"{f['name']}:{_type_name(f['type'])}" for f in kind["fields"]) + ">"
    if kind["type"] == "array":
        return f"array<{_type_name(kind['elementType'])}>"
    if kind["type"] == "map":
        return f"map<{_type_name(kind['keyType'])},{_type_name(kind['valueType'])}>"
    return str(kind["type"])
