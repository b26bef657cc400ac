"""Long ranges: hourly and monthly pipelines end to end, chunks of partitions per Spark job and commit,
explicit partition lists and newest-first order, on real Spark + Delta + Prefect."""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill import window
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.ledger import Ledger
from prefect_backfill.partitions import Grain
from prefect_backfill.planning import Status
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark

HOURS = 6  # 2024-01-01T00 … T05
ROWS_PER_HOUR = 10


@pytest.fixture(scope="module")
def hourly_source(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Events partitioned by the hour they belong to (a timestamp column)."""
    path = str(tmp_path_factory.mktemp("hourly") / "events")
    base = datetime(2024, 1, 1)
    spark.range(HOURS * ROWS_PER_HOUR).select(
        F.col("id").alias("event_id"),
        F.timestamp_add(
            "HOUR", (F.col("id") / ROWS_PER_HOUR).cast("int"), F.lit(base).cast("timestamp_ntz").cast("timestamp")
        ).alias("event_hour"),
        (F.col("id") % 7).alias("value"),
    ).write.format("delta").partitionBy("event_hour").save(path)
    return path


@pytest.fixture(scope="module")
def monthly_source(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Invoices partitioned by month (the first day of the month, a date)."""
    path = str(tmp_path_factory.mktemp("monthly") / "invoices")
    rows = [(i, date(2024, 1 + i % 4, 1), float(i)) for i in range(40)]
    spark.createDataFrame(rows, "invoice_id long, month date, total double").write.format("delta").partitionBy(
        "month"
    ).save(path)
    return path


def doubled(df: DataFrame) -> DataFrame:
    return df.withColumn("value", F.col("value") * 2)


def with_tax(df: DataFrame) -> DataFrame:
    return df.withColumn("with_tax", F.round(F.col("total") * 1.2, 2))


STARTED: list[int] = []


def doubled_counting(df: DataFrame) -> DataFrame:
    STARTED.append(1)
    return doubled(df)


def second_hour_leaks(df: DataFrame) -> DataFrame:
    """Writes the rows of 01:00 into 02:00: Delta's replaceWhere check fails that partition only."""
    leak = F.col("event_hour") == F.lit(datetime(2024, 1, 1, 1)).cast("timestamp_ntz").cast("timestamp")
    return df.withColumn(
        "event_hour",
        F.when(leak, F.timestamp_add("HOUR", F.lit(1), F.col("event_hour"))).otherwise(F.col("event_hour")),
    )


def rows_by_partition(path: str, column: str) -> dict[str, int]:
    table = DeltaTable(path).to_pyarrow_table(columns=[column])
    out: dict[str, int] = {}
    for value in table.column(column).to_pylist():
        key = str(value)
        out[key] = out.get(key, 0) + 1
    return out


def test_hourly_in_chunks_resumes_from_ledger_and_from_cache(lake: Lake, hourly_source: str) -> None:
    p = lake.make(doubled, source=hourly_source, partition_column="event_hour", grain=Grain.HOUR)
    first = backfill(pipeline=p.name, start="2024-01-01T00", end="2024-01-01T05", max_concurrency=2).to_dict()
    commits = [c for c in DeltaTable(lake.target).history() if "predicate" in (c.get("operationParameters") or {})]
    assert len(commits) == 2  # two chunks of three hours: one replaceWhere commit each
    assert len(first["completed"]) == HOURS and first["rows_written"] == HOURS * ROWS_PER_HOUR
    assert set(rows_by_partition(lake.target, "event_hour").values()) == {ROWS_PER_HOUR}
    current = Ledger(lake.ledger).current(p.name)
    assert sorted(current) == [f"2024-01-01T{h:02d}" for h in range(HOURS)]
    assert {s.status for s in current.values()} == {Status.COMPLETE}
    assert {s.rows_out for s in current.values()} == {ROWS_PER_HOUR}

    again = backfill(pipeline=p.name, start="2024-01-01T00", end="2024-01-01T05").to_dict()
    assert again["skipped"] == HOURS and not again["completed"]

    # The ledger is lost: every partition's own cache record serves it (whatever chunk it ran in), and
    # nothing is rewritten.
    shutil.rmtree(lake.ledger)
    version = DeltaTable(lake.target).version()
    cached = backfill(pipeline=p.name, start="2024-01-01T00", end="2024-01-01T05", chunk_partitions=1).to_dict()
    assert len(cached["cached"]) == HOURS and not cached["completed"]
    assert DeltaTable(lake.target).version() == version
    assert {s.status for s in Ledger(lake.ledger).current(p.name).values()} == {Status.COMPLETE}


def test_a_failure_in_a_chunk_fails_only_its_partition(lake: Lake, hourly_source: str) -> None:
    p = lake.make(second_hour_leaks, source=hourly_source, partition_column="event_hour", grain=Grain.HOUR)
    with pytest.raises(BackfillFailedError) as failed:
        backfill(pipeline=p.name, start="2024-01-01T00", end="2024-01-01T03", max_concurrency=1, retries=0)
    assert failed.value.failed == ("2024-01-01T01",)
    assert "Resume with: backfill run" in str(failed.value)
    current = Ledger(lake.ledger).current(p.name)
    assert current["2024-01-01T01"].status is Status.FAILED
    # In the chunk, 01:00's rows land in 02:00 (inside the chunk): 01:00 is empty and fails the chunk's
    # check; alone, its rows fall outside its partition.
    error = current["2024-01-01T01"].error or ""
    assert "returned no rows" in error or "outside partition" in error
    assert {k for k, s in current.items() if s.status is Status.COMPLETE} == {
        "2024-01-01T00",
        "2024-01-01T02",
        "2024-01-01T03",
    }
    # Nothing of the failed partition is visible; the others hold exactly their own rows.
    counts = rows_by_partition(lake.target, "event_hour")
    assert len(counts) == 3 and set(counts.values()) == {ROWS_PER_HOUR}


def test_window_closes_between_chunks(lake: Lake, hourly_source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = lake.make(doubled_counting, source=hourly_source, partition_column="event_hour", grain=Grain.HOUR)
    deadline = datetime.now(UTC) + timedelta(hours=1)
    STARTED.clear()
    # The window closes while the first chunk runs (its transform is the second call; the first one
    # creates the target's schema): that chunk finishes, the other two do not start.
    monkeypatch.setattr(
        window, "clock", lambda: deadline + timedelta(seconds=1) if len(STARTED) >= 2 else datetime.now(UTC)
    )
    state = backfill(
        pipeline=p.name,
        start="2024-01-01T00",
        end="2024-01-01T05",
        chunk_partitions=2,
        max_concurrency=1,
        window_end=deadline.isoformat(),
        return_state=True,
    )
    assert state.is_completed() and state.name == "WindowClosed"
    summary = state.result().to_dict()
    assert len(summary["completed"]) == 2 and len(summary["not_started"]) == 4
    monkeypatch.setattr(window, "clock", window.system_clock)
    # The next run takes what remains (the ledger says which partitions those are).
    rest = backfill(pipeline=p.name, start="2024-01-01T00", end="2024-01-01T05").to_dict()
    assert len(rest["completed"]) == 4 and rest["skipped"] == 2
    assert len(rows_by_partition(lake.target, "event_hour")) == HOURS


def test_monthly_explicit_list_newest_first(lake: Lake, monthly_source: str) -> None:
    p = lake.make(with_tax, source=monthly_source, partition_column="month", grain=Grain.MONTH)
    out = backfill(pipeline=p.name, partitions=["2024-02", "2024-04", "2024-02"], newest_first=True).to_dict()
    assert out["completed"] == ["2024-04", "2024-02"] and out["total"] == 2
    assert rows_by_partition(lake.target, "month") == {"2024-02-01": 10, "2024-04-01": 10}
    ranged = backfill(pipeline=p.name, start="2024-01", end="2024-04", chunk_partitions=3).to_dict()
    assert sorted(ranged["completed"]) == ["2024-01", "2024-03"] and ranged["skipped"] == 2
    table = DeltaTable(lake.target).to_pyarrow_table()
    assert table.num_rows == 40
    assert all(
        abs(w - round(t * 1.2, 2)) < 1e-9
        for w, t in zip(table["with_tax"].to_pylist(), table["total"].to_pylist(), strict=True)
    )
