"""The backfill's Prefect events reach a server, from a real run (Spark + Delta + Prefect's test server):
one `completed` event per commit with its partitions' rows, one `check-failed` event for the partition a
check failed, one `failed` event for the partition a Spark error failed, one `run.finished` with the
counts; each related to the flow run (and partition events to their task run) by Prefect itself."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.events import CHECK_FAILED, COMPLETED, FAILED, RUN_FINISHED
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.event_reading import wait_for_events
from tests.integration.conftest import ROWS_PER_DAY, Lake

pytestmark = pytest.mark.spark

EMPTY, POISON = "2024-01-02", "2024-01-04"


def empty_and_poison(df: DataFrame) -> DataFrame:
    """No rows for EMPTY (the engine's non-empty-output check fails it before commit); a Spark error on
    every row of POISON (not a check: retried, bisected, then FAILED)."""
    out = to_silver_orders(df).where(F.col("order_date") != F.lit(EMPTY).cast("date"))
    bad = F.col("order_date") == F.lit(POISON).cast("date")
    return out.withColumn("amount_usd", F.when(bad, F.raise_error(F.lit("poison row"))).otherwise(F.col("amount_usd")))


def related_ids(event: Any) -> set[str]:
    return {r.id for r in event.related}


def test_events_of_a_run_with_a_failed_check_and_a_failed_partition_reach_the_server(lake: Lake) -> None:
    spec = lake.make(empty_and_poison)
    since = datetime.now(UTC)
    with pytest.raises(BackfillFailedError) as failure:
        backfill(pipeline=spec.name, start="2024-01-01", end="2024-01-04", retries=0, max_concurrency=1)
    assert set(failure.value.failed) == {EMPTY, POISON}

    found = wait_for_events(spec.name, since, lambda es: any(e.event == RUN_FINISHED for e in es))
    by_name: dict[str, list[Any]] = {}
    for e in found:
        by_name.setdefault(e.event, []).append(e)
    assert sorted(by_name) == sorted([COMPLETED, CHECK_FAILED, FAILED, RUN_FINISHED]), [e.event for e in found]

    (check,) = by_name[CHECK_FAILED]
    assert check.resource.id == f"prefect-backfill.partition.{spec.name}.{EMPTY}"
    assert check.resource["prefect-backfill.check"] == "non_empty_output"
    assert check.payload["error_type"] == "EmptyOutputError"
    assert "returned no rows" in check.payload["error"]

    (failed,) = by_name[FAILED]
    assert failed.resource.id == f"prefect-backfill.partition.{spec.name}.{POISON}"
    assert "prefect-backfill.check" not in failed.resource.root
    assert "poison row" in failed.payload["error"] and failed.payload["error"] == failure.value.errors[POISON]

    # The good days were committed (each split off its failing neighbour), one event per commit.
    written = {p["partition"]: p for e in by_name[COMPLETED] for p in e.payload["partitions"]}
    assert written == {
        "2024-01-01": {"partition": "2024-01-01", "rows_in": ROWS_PER_DAY, "rows_out": ROWS_PER_DAY},
        "2024-01-03": {"partition": "2024-01-03", "rows_in": ROWS_PER_DAY, "rows_out": ROWS_PER_DAY},
    }
    current = Ledger(lake.ledger).current(spec.name)
    for e in by_name[COMPLETED]:
        for p in e.payload["partitions"]:  # the event says what the ledger says
            assert current[p["partition"]].status is Status.COMPLETE
            assert current[p["partition"]].table_version == e.payload["table_version"]

    (finished,) = by_name[RUN_FINISHED]
    assert finished.resource.id == f"prefect-backfill.pipeline.{spec.name}"
    assert finished.resource["prefect-backfill.outcome"] == "failed"
    counts = {k: finished.payload[k] for k in ("total", "completed", "failed", "cached", "skipped", "outcome")}
    assert counts == {"total": 4, "completed": 2, "failed": 2, "cached": 0, "skipped": 0, "outcome": "failed"}

    # Prefect relates every event to the run it was emitted in; partition events also to their task run.
    run_id = finished.payload["run_id"]
    for e in found:
        assert f"prefect.flow-run.{run_id}" in related_ids(e), e.event
        assert f"prefect-backfill.pipeline.{spec.name}" in related_ids(e) | {e.resource.id}
        if e.event != RUN_FINISHED:
            assert any(i.startswith("prefect.task-run.") for i in related_ids(e)), e.event
