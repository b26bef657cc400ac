"""One ledger record (prefect_backfill.ledger_record): the Delta schema, the event, the derived state, the
fold and the SQL views must agree column for column; each test here fails when one of them falls behind."""

from __future__ import annotations

import sqlite3
import typing
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
from deltalake import DeltaTable, write_deltalake

from prefect_backfill.ledger import SCHEMA, Ledger
from prefect_backfill.ledger_record import (
    COLUMNS,
    CURRENT_STATUS_SQL,
    EVENTS_VIEW,
    STATE_NAMES,
    LedgerEvent,
    PartitionState,
    Status,
    latest_states,
)
from prefect_backfill.results import PartitionResult

T0 = datetime(2024, 7, 1, 3, 0, tzinfo=UTC)


def _optional(hint: Any) -> set[Any]:
    """The types a hint admits, None included."""
    return set(typing.get_args(hint)) if typing.get_args(hint) else {hint}


def test_the_schema_the_event_and_the_state_name_the_same_columns() -> None:
    event = [f.name for f in fields(LedgerEvent)]
    assert sorted(SCHEMA.names) == sorted(event) == sorted(c.name for c in COLUMNS)
    # The state has a field for every column (the event's time as updated_at) and nothing else.
    assert sorted(f.name for f in fields(PartitionState)) == sorted(STATE_NAMES.get(n, n) for n in event)


def test_the_state_types_each_column_as_the_event_does() -> None:
    event, state = typing.get_type_hints(LedgerEvent), typing.get_type_hints(PartitionState)
    for column in COLUMNS:
        admitted = _optional(state[column.state])
        # the state may admit None where the event has a default (a hand-built state leaves it out)
        assert _optional(event[column.name]) <= admitted, (column.name, event[column.name], state[column.state])
        assert admitted - _optional(event[column.name]) <= {type(None)}, column.name


def test_the_cache_record_types_the_columns_it_shares_with_the_ledger_alike() -> None:
    """A cache record (PartitionResult) becomes a cached COMPLETE event; the fields they share must agree."""
    event, record = typing.get_type_hints(LedgerEvent), typing.get_type_hints(PartitionResult)
    shared = [name for name in record if name in event]
    assert {"pipeline", "partition", "fingerprint", "rows_in", "rows_out", "run_id", "target_digest"} <= set(shared)
    for name in shared:
        assert _optional(record[name]) - {type(None)} <= _optional(event[name]), name


def _every_column_set() -> LedgerEvent:
    """An event with a value that is not the default in every column."""
    values: dict[str, Any] = {}
    for i, (name, hint) in enumerate(typing.get_type_hints(LedgerEvent).items()):
        kind = (_optional(hint) - {type(None)}).pop()
        values[name] = {
            str: f"{name}-value",
            int: 100 + i,
            float: 1.5 + i,
            bool: True,
            datetime: T0 + timedelta(minutes=i),
            Status: Status.FAILED,
        }[kind]
    return LedgerEvent(**values)


def test_every_column_round_trips_from_the_event_through_the_table_into_the_state(tmp_path: Path) -> None:
    event = _every_column_set()
    ledger = Ledger(tmp_path / "ledger")
    ledger.record([event])
    state = ledger.current(event.pipeline)[event.partition]
    for column in COLUMNS:
        assert getattr(state, column.state) == getattr(event, column.name), column.name


def _sqlite(rows: list[dict[str, Any]]) -> sqlite3.Connection:
    """``backfill_progress_events`` in SQLite (stdlib, window functions): the view's SQL runs unchanged."""
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE {EVENTS_VIEW} ({', '.join(c.name for c in COLUMNS)})")
    names = [c.name for c in COLUMNS]
    stored = [[_stored(row.get(name)) for name in names] for row in rows]
    db.executemany(f"INSERT INTO {EVENTS_VIEW} VALUES ({', '.join('?' * len(names))})", stored)
    return db


def _stored(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _view(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    cursor = db.execute(CURRENT_STATUS_SQL)
    names = [d[0] for d in cursor.description]
    return {row[names.index("partition")]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def _as_view(state: PartitionState) -> dict[str, Any]:
    out = {f.name: _stored(getattr(state, f.name)) for f in fields(PartitionState)}
    out["status"] = state.status.value
    out["cached"] = int(state.cached)
    return out


def test_the_status_view_selects_every_column_and_picks_the_state_the_fold_picks(tmp_path: Path) -> None:
    base = replace(_every_column_set(), status=Status.PENDING, partition="a", event_time=T0)
    events = [
        base,
        replace(base, status=Status.RUNNING, event_time=T0 + timedelta(seconds=1)),
        replace(base, status=Status.COMPLETE, event_time=T0 + timedelta(seconds=1), rows_out=7),  # tie: terminal wins
        replace(base, partition="b", status=Status.FAILED, error="boom", cached=False),
        replace(base, partition="b", status=Status.RUNNING, event_time=T0 - timedelta(seconds=1)),  # older
        replace(base, partition="c", status=Status.UNDONE, event_time=T0, undone_run="r0"),
        replace(base, partition="c", status=Status.PENDING, event_time=T0),  # tie: UNDONE outranks PENDING
    ]
    ledger = Ledger(tmp_path / "ledger")
    ledger.record(events)
    rows = ledger.events(base.pipeline).to_pylist()
    view, fold = _view(_sqlite(rows)), latest_states(rows)
    assert set(view) == set(fold) == {"a", "b", "c"}
    for key, state in fold.items():
        assert set(view[key]) == {f.name for f in fields(PartitionState)}, "the view must select every column"
        assert view[key] == _as_view(state), key
    assert (fold["a"].status, fold["a"].rows_out, fold["b"].status, fold["c"].status) == (
        Status.COMPLETE,
        7,
        Status.FAILED,
        Status.UNDONE,
    )


def _legacy_ledger(path: Path) -> None:
    """A ledger as releases before the ``cached`` column wrote it: a cache hit was a COMPLETE event whose
    ``error`` said where it came from."""
    old = pa.schema([f for f in SCHEMA if f.name not in ("cached", "target_digest", "undone_run", "check_name")])
    row = {"pipeline": "orders", "version": "1", "fingerprint": "1:a", "event_time": T0, "host": "h", "attempt": 1}
    rows = [
        {**row, "run_id": "r1", "partition": "a", "status": "COMPLETE", "duration_s": 2.0},
        {**row, "run_id": "r2", "partition": "b", "status": "COMPLETE", "duration_s": 0.0, "error": "cached: r1"},
        {**row, "run_id": "r2", "partition": "c", "status": "FAILED", "duration_s": 1.0, "error": "boom"},
    ]
    write_deltalake(str(path), pa.Table.from_pylist(rows, schema=old), mode="append")


def test_an_old_ledger_reads_its_cache_hits_as_cached_in_the_fold_and_in_the_view(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    _legacy_ledger(path)
    ledger = Ledger(path)
    states, durations = ledger.read("orders")
    assert (states["a"].cached, states["b"].cached, states["c"].cached) == (False, True, False)
    assert durations == [2.0]  # a cache hit's zero seconds is no history for the ETA
    # The raw rows (no `cached` column) through the SQL view: the same answer.
    raw = pads.dataset(DeltaTable(str(path)).file_uris(), format="parquet").to_table().to_pylist()
    view = _view(_sqlite(raw))
    assert {key: bool(v["cached"]) for key, v in view.items()} == {"a": False, "b": True, "c": False}
    # Its next append gains the newer columns; the old rows still read as before.
    ledger.record([LedgerEvent("r3", "orders", "d", Status.COMPLETE, "1", "1:a", cached=True)])
    assert [s.cached for _, s in sorted(ledger.current("orders").items())] == [False, True, False, True]
