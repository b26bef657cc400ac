"""The ledger's record, defined once: the Delta schema, the event, the derived state and the SQL views.

Why one definition: the record used to be spelled five times (the Arrow schema, the event, the state,
the fold from rows to states, the SQL view), and the copies drifted apart (the view had no ``cached``
and no ``target_digest``). Here :class:`Recorded` holds every column an event records beyond its
identity; :class:`LedgerEvent` (what is appended) and :class:`PartitionState` (the latest event of a
partition) both inherit it, so a column added there is in both at once; :data:`COLUMNS` (and from it the
Arrow schema in :mod:`prefect_backfill.ledger`, :func:`latest_states` and :data:`CURRENT_STATUS_SQL`) are
derived from the event's fields. ``tests/unit/test_ledger_record.py`` fails when any of them disagree.

Pure values (no pyarrow, Spark or Prefect): planning reads states without loading a storage engine.
"""

from __future__ import annotations

import enum
import socket
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "COLUMNS",
    "CURRENT_STATUS_SQL",
    "EVENTS_VIEW",
    "LEGACY_CACHED_SQL",
    "RANK",
    "STATE_NAMES",
    "STATUS_VIEW",
    "Column",
    "ColumnType",
    "LedgerEvent",
    "PartitionState",
    "Recorded",
    "Status",
    "latest_states",
]


class Status(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    UNDONE = "UNDONE"  # a COMPLETE partition restored to its content before that run (backfill undo)
    STALE = "STALE"  # a COMPLETE partition whose upstream partitions an upstream run rewrote (cascade mark)


#: At equal event times the latest word is the higher rank: a terminal event beats RUNNING, which beats
#: PENDING (the fold and the SQL view both order by it).
RANK: Mapping[Status, int] = {
    Status.PENDING: 1,
    Status.RUNNING: 2,
    Status.COMPLETE: 3,
    Status.FAILED: 3,
    Status.UNDONE: 3,
    Status.STALE: 3,
}

_HOST = socket.gethostname()
_INT32 = {"width": 32}  # field metadata: stored as a 32-bit integer (the column's type since the first ledger)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """What an event records about its partition beyond who, what and when: every column but the
    identity. Columns added after the first release are nullable: older ledgers gain them on their next
    append and their old rows read as null (see :mod:`prefect_backfill.ledger`)."""

    started_at: datetime | None = None
    finished_at: datetime | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    duration_s: float | None = None
    table_version: int | None = None
    error: str | None = None
    source_digest: str | None = None  # the source partition's files the result was computed from
    source_version: int | None = None  # the source table's version that digest was read at
    target_id: str | None = None  # the Delta table id of the target it was written to
    cached: bool = False  # COMPLETE from a cache record: no transform ran in this run
    cached_from: str | None = None  # cached COMPLETE: the run that wrote what the cache record holds
    replaced_version: int | None = None  # the target version a COMPLETE commit replaced (undo reads it)
    rows_before: int | None = None  # the partition's rows in the target before the commit
    diff: str | None = None  # JSON: the before/after diff of the partition (prefect_backfill.diff)
    check_name: str | None = None  # the pre-commit check a FAILED partition did not pass
    target_digest: str | None = None  # COMPLETE: digest of the partition's target files after the commit
    shape: str | None = None  # COMPLETE: the written columns' names and types (schema_change.shape_text)
    undone_run: str | None = (
        None  # UNDONE events: the run whose writes this undo restored (prefect_backfill.undo_planning)
    )
    # STALE events: JSON {"pipeline", "partitions"} of the upstream run (run_id) whose commit made it stale
    upstream: str | None = None


@dataclass(frozen=True, slots=True)
class LedgerEvent(Recorded):
    """One thing that happened to one partition: one row of the ledger."""

    run_id: str
    pipeline: str
    partition: str
    status: Status
    version: str
    fingerprint: str
    attempt: int = field(default=0, metadata=_INT32)
    event_time: datetime = field(default_factory=_now, kw_only=True)
    host: str = field(default=_HOST, kw_only=True)


@dataclass(frozen=True, slots=True)
class PartitionState(Recorded):
    """The ledger's latest word on one partition: its latest event, whose ``event_time`` is called
    ``updated_at`` here (:data:`STATE_NAMES`)."""

    partition: str
    status: Status
    fingerprint: str
    version: str
    run_id: str
    updated_at: datetime
    pipeline: str = field(default="", kw_only=True)
    attempt: int | None = field(default=None, kw_only=True)
    host: str | None = field(default=None, kw_only=True)


#: Event columns the state names differently (the event's time is when the partition was last updated).
STATE_NAMES: Mapping[str, str] = {"event_time": "updated_at"}


class ColumnType(enum.StrEnum):
    """A column's storage type; the value is its Spark SQL name (a view adds a missing column as
    ``CAST(NULL AS <type>)``)."""

    STRING = "string"
    INT = "int"
    BIGINT = "bigint"
    DOUBLE = "double"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: ColumnType
    state: str  # the PartitionState field it becomes


def _column_type(hint: Any, metadata: Mapping[str, Any]) -> ColumnType:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint  # X | None: X
    if base is bool:
        return ColumnType.BOOLEAN
    if base is int:
        return ColumnType.INT if metadata.get("width") == 32 else ColumnType.BIGINT
    if base is float:
        return ColumnType.DOUBLE
    if base is datetime:
        return ColumnType.TIMESTAMP
    if base is str or (isinstance(base, type) and issubclass(base, str)):  # Status is stored as its value
        return ColumnType.STRING
    raise TypeError(f"no ledger column type for {hint!r}")


def _columns() -> tuple[Column, ...]:
    """The ledger's columns from :class:`LedgerEvent`'s fields: its identity first, then what it records."""
    hints = typing.get_type_hints(LedgerEvent)
    recorded = {f.name for f in fields(Recorded)}
    ordered = sorted(fields(LedgerEvent), key=lambda f: f.name in recorded)  # stable: declaration order kept
    return tuple(
        Column(f.name, _column_type(hints[f.name], f.metadata), STATE_NAMES.get(f.name, f.name)) for f in ordered
    )


#: Every column of the ledger, in storage order.
COLUMNS: tuple[Column, ...] = _columns()


def latest_states(rows: Iterable[Mapping[str, object]]) -> dict[str, PartitionState]:
    """Fold events into the current state per partition: the latest event wins; at equal times the
    higher :data:`RANK`. Every column becomes the state's field of the same name (:data:`STATE_NAMES`
    aside); a column an old row lacks reads as null."""
    best: dict[str, tuple[tuple[Any, int], Mapping[str, object]]] = {}
    for row in rows:
        order = (row["event_time"], RANK[Status(str(row["status"]))])
        key = str(row["partition"])
        held = best.get(key)
        if held is None or order > held[0]:
            best[key] = (order, row)
    return {key: _state(row) for key, (_, row) in best.items()}


def _state(row: Mapping[str, object]) -> PartitionState:
    values: dict[str, Any] = {c.state: row.get(c.name) for c in COLUMNS}
    values["status"] = Status(str(values["status"]))
    values["cached"] = bool(values["cached"])  # null in rows older than the column: not from a cache
    return PartitionState(**values)


# -- SQL ---------------------------------------------------------------------------------------------------

#: The views :func:`prefect_backfill.ledger.register_ledger_views` registers: every event, and the current state.
EVENTS_VIEW = "backfill_progress_events"
STATUS_VIEW = "backfill_progress"

#: Releases before the ``cached`` column marked a cache hit only by a COMPLETE event carrying an error (no
#: other COMPLETE ever carried one): such a row reads as cached. The ledger applies the same rule to Arrow.
LEGACY_CACHED_SQL = "COALESCE(cached, status = 'COMPLETE' AND error IS NOT NULL)"


def _select(column: Column) -> str:
    if column.name == "cached":
        return f"{LEGACY_CACHED_SQL} AS cached"
    return column.name if column.state == column.name else f"{column.name} AS {column.state}"


def _rank_sql() -> str:
    by_rank: dict[int, list[str]] = {}
    for status, rank in RANK.items():
        by_rank.setdefault(rank, []).append(f"'{status.value}'")
    cases = " ".join(f"WHEN status IN ({', '.join(names)}) THEN {rank}" for rank, names in sorted(by_rank.items()))
    return f"CASE {cases} END"


#: The latest event per partition (every column; ``event_time`` as ``updated_at``), in Spark SQL or any
#: engine with window functions, over the view :data:`EVENTS_VIEW`.
CURRENT_STATUS_SQL = f"""
SELECT {", ".join(_select(c) for c in COLUMNS)}
FROM (
  SELECT *, row_number() OVER (
      PARTITION BY pipeline, partition
      ORDER BY event_time DESC, {_rank_sql()} DESC
  ) AS rn
  FROM {EVENTS_VIEW}
) WHERE rn = 1
""".strip()
