"""The payloads of the backfill's Prefect events (pure), and that emitting can neither fail a partition
nor start a server outside a run. That they reach a server: tests/integration/test_events.py (Prefect's
test server) and tests/e2e/test_events.py (a real `prefect server start`, a worker, the automation)."""

from __future__ import annotations

import json
import time

import pytest

from prefect_backfill import events
from prefect_backfill.errors import EmptyOutputError, EmptySourcePartitionError, PartitionValidationError
from prefect_backfill.events import (
    CHECK_FAILED,
    COMPLETED,
    FAILED,
    MAX_RELATED_PARTITIONS,
    RUN_FINISHED,
    check_name,
    outcome,
    partition_failed,
    partitions_completed,
    run_finished,
)
from prefect_backfill.partitions import Grain, partitions_between
from prefect_backfill.results import BackfillSummary


def completed(rows: dict[str, tuple[int, int]]) -> events.BackfillEvent:
    return partitions_completed(
        "demo_orders", rows, run_id="r1", version="2", attempt=1, table_version=7, duration_s=0.12345
    )


def test_a_commit_of_one_partition_is_an_event_about_that_partition() -> None:
    e = completed({"2024-01-03": (40, 39)})
    assert e.event == COMPLETED
    assert e.resource == {
        "prefect.resource.id": "prefect-backfill.partition.demo_orders.2024-01-03",
        "prefect.resource.name": "demo_orders 2024-01-03",
        "prefect-backfill.pipeline": "demo_orders",
        "prefect-backfill.partition": "2024-01-03",
        "prefect-backfill.partitions": "1",
    }
    assert e.related == (
        {
            "prefect.resource.id": "prefect-backfill.pipeline.demo_orders",
            "prefect.resource.role": "pipeline",
            "prefect.resource.name": "demo_orders",
        },
    )
    assert e.payload == {
        "pipeline": "demo_orders",
        "run_id": "r1",
        "version": "2",
        "attempt": 1,
        "table_version": 7,
        "replaced_version": 6,
        "count": 1,
        "rows_in": 40,
        "rows_out": 39,
        "duration_s": 0.123,
        "partitions": [{"partition": "2024-01-03", "rows_in": 40, "rows_out": 39}],
    }


def test_a_chunk_commit_is_one_event_for_its_span_listing_every_partition() -> None:
    keys = [p.key for p in partitions_between("2024-01-01", "2024-06-30", Grain.DAY)]  # 182 days, one commit
    e = completed({k: (10, 10) for k in keys})
    assert e.resource["prefect.resource.id"] == "prefect-backfill.partition.demo_orders.2024-01-01..2024-06-30"
    assert e.resource["prefect-backfill.partitions"] == "182"
    assert [p["partition"] for p in e.payload["partitions"]] == keys  # the payload is complete …
    assert e.payload["rows_out"] == 1820 and e.payload["count"] == 182
    partitions = [r for r in e.related if r.get("prefect.resource.role") == "partition"]
    assert len(partitions) == MAX_RELATED_PARTITIONS  # … the related resources stay within the server's limit
    assert partitions[0]["prefect.resource.id"] == "prefect-backfill.partition.demo_orders.2024-01-01"
    assert len(json.dumps(e.payload)) < 20_000  # far below Prefect's 1.5 MB per event


def test_an_unknown_commit_version_has_no_replaced_version() -> None:
    e = partitions_completed(
        "p", {"2024-01-01": (1, 1)}, run_id="r", version="1", attempt=2, table_version=None, duration_s=0
    )
    assert e.payload["table_version"] is None and e.payload["replaced_version"] is None


class NamedCheckError(PartitionValidationError):
    """What the lead's checks raise: a validation error that names its check."""

    def __init__(self, message: str, check: object) -> None:
        super().__init__(message)
        self.check = check


class Check:
    name = "amount_usd_non_negative"


def test_check_names_come_from_the_error_or_the_built_in_check() -> None:
    assert check_name(NamedCheckError("x", "rows_ratio")) == "rows_ratio"
    assert check_name(NamedCheckError("x", Check())) == "amount_usd_non_negative"
    assert check_name(EmptyOutputError("x")) == "non_empty_output"
    assert check_name(EmptySourcePartitionError("x")) == "non_empty_source"
    assert check_name(PartitionValidationError("rows outside the partition")) == "validation"
    assert check_name(RuntimeError("DIVIDE_BY_ZERO")) is None
    assert check_name(ValueError("x")) is None


def test_a_failed_check_is_a_check_failed_event_with_the_check_as_a_label() -> None:
    exc = NamedCheckError("amount_usd >= 0 failed: 3 rows", "amount_usd_non_negative")
    e = partition_failed("demo_orders", "2024-01-02", exc, str(exc), run_id="r1", version="2", attempt=1)
    assert e.event == CHECK_FAILED
    assert e.resource["prefect.resource.id"] == "prefect-backfill.partition.demo_orders.2024-01-02"
    assert e.resource["prefect-backfill.check"] == "amount_usd_non_negative"
    assert e.payload == {
        "pipeline": "demo_orders",
        "partition": "2024-01-02",
        "run_id": "r1",
        "version": "2",
        "attempt": 1,
        "error": "amount_usd >= 0 failed: 3 rows",
        "error_type": "NamedCheckError",
        "check": "amount_usd_non_negative",
    }
    assert e.related[0]["prefect.resource.id"] == "prefect-backfill.pipeline.demo_orders"


def test_any_other_error_is_a_failed_event_without_a_check() -> None:
    exc = RuntimeError("[DIVIDE_BY_ZERO] Division by zero")
    e = partition_failed("demo_orders", "2024-01-04", exc, "RuntimeError: boom", run_id="r1", version="2", attempt=3)
    assert e.event == FAILED
    assert "prefect-backfill.check" not in e.resource and "check" not in e.payload
    assert e.payload["error_type"] == "RuntimeError" and e.payload["attempt"] == 3


def summary(**kw: object) -> BackfillSummary:
    base: dict[str, object] = {
        "pipeline": "demo_orders",
        "run_id": "r1",
        "start": "2024-01-01",
        "end": "2024-01-04",
        "fingerprint": "2-abc",
        "total": 4,
        "skipped": 1,
    }
    return BackfillSummary(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"completed": ("2024-01-01",)}, "completed"),
        ({}, "completed"),  # nothing was due
        ({"completed": ("2024-01-01",), "failed": (("2024-01-02", "e"),), "not_started": ("2024-01-03",)}, "failed"),
        ({"not_started": ("2024-01-03",)}, "window-closed"),
        ({"held": ("2024-01-03",)}, "held"),
    ],
)
def test_the_outcome_says_whether_the_run_did_what_was_asked(kw: dict[str, object], expected: str) -> None:
    assert outcome(summary(**kw)) == expected


def test_the_run_finished_event_counts_every_partition() -> None:
    s = summary(
        completed=("2024-01-01", "2024-01-03"),
        cached=("2024-01-04",),
        failed=(("2024-01-02", "the transform of demo_orders returned no rows"),),
        rows_written=120,
        duration_s=12.34567,
    )
    e = run_finished(s)
    assert e.event == RUN_FINISHED
    assert e.resource == {
        "prefect.resource.id": "prefect-backfill.pipeline.demo_orders",
        "prefect.resource.name": "demo_orders",
        "prefect-backfill.pipeline": "demo_orders",
        "prefect-backfill.outcome": "failed",
    }
    assert e.payload == {
        "pipeline": "demo_orders",
        "run_id": "r1",
        "start": "2024-01-01",
        "end": "2024-01-04",
        "outcome": "failed",
        "total": 4,
        "completed": 2,
        "cached": 1,
        "skipped": 1,
        "failed": 1,
        "not_started": 0,
        "held": 0,
        "rows_written": 120,
        "duration_s": 12.346,
        "failed_partitions": [{"partition": "2024-01-02", "error": "the transform of demo_orders returned no rows"}],
    }


def test_outside_a_run_nothing_is_sent_and_no_server_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without PREFECT_API_URL, Prefect's emit_event would start a temporary server (~9 s) for one event."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    import prefect.events

    calls: list[str] = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda event, **_: calls.append(event))
    started = time.perf_counter()
    assert events.emit([completed({"2024-01-01": (1, 1)})]) == 0
    assert events.emit_run_finished(summary()) == 0
    assert calls == []  # Prefect's emit_event was never reached
    assert time.perf_counter() - started < 0.5


def test_emitting_never_raises_into_the_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a run, a broken events client (or an event too large) costs the event, never the partition."""
    import prefect.events

    calls: list[str] = []

    def broken(event: str, **_: object) -> None:
        calls.append(event)
        raise RuntimeError("websocket closed")

    monkeypatch.setattr(events, "_in_a_run", lambda: True)
    monkeypatch.setattr(prefect.events, "emit_event", broken)
    assert events.emit([completed({"2024-01-01": (1, 1)})]) == 0
    assert calls == [COMPLETED]  # it was really tried


def test_the_emit_helpers_swallow_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_backfill.engine import ChunkOutcome
    from prefect_backfill.pipeline import Pipeline, TableRef

    monkeypatch.setattr(events, "_in_a_run", lambda: True)
    sent: list[tuple[str, dict[str, object]]] = []

    def record(event: str, **kw: object) -> object:
        sent.append((event, kw))
        return object()

    import prefect.events

    monkeypatch.setattr(prefect.events, "emit_event", record)
    spec = Pipeline(
        name="p",
        source=TableRef("bronze.orders"),
        target=TableRef("silver.orders"),
        partition_column="d",
        transform=lambda df: df,
        version="1",
    )
    outcome_ = ChunkOutcome(table_version=3, rows={"2024-01-01": (5, 5)})
    assert events.emit_partitions_completed(spec, "r", 1, ["2024-01-01", "2024-01-02"], outcome_, 0.1) == 0  # no rows
    assert events.emit_partitions_completed(spec, "r", 1, ["2024-01-01"], outcome_, 0.1) == 1
    assert events.emit_partitions_failed(spec, "r", 1, ["2024-01-01", "2024-01-02"], EmptyOutputError("e"), "e") == 2
    assert [e for e, _ in sent] == [COMPLETED, CHECK_FAILED, CHECK_FAILED]
