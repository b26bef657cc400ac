"""End to end on real Spark + Delta + Prefect: the guarantees of issue #2. Partitions run in chunks (one
transform call, one Spark job and one commit per chunk): CALLS counts chunks, plus the one call on an empty
input with which a run on an existing target reads the output's schema (SCHEMA_CHECK: an analysis, no job)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.integration.conftest import LAKES, Lake

pytestmark = pytest.mark.spark

CALLS: list[int] = []
SCHEMA_CHECK = 1  # a run on an existing target calls the transform once on an empty input, before its chunks
BAD_DATES: set[str] = set()
_calls_lock = threading.Lock()


def counting(df: DataFrame) -> DataFrame:
    """The demo transform, counting executions and failing (at run time, inside Spark) on BAD_DATES."""
    with _calls_lock:
        CALLS.append(1)
    out = to_silver_orders(df)
    if BAD_DATES:
        bad = F.col("order_date").isin([date.fromisoformat(d) for d in sorted(BAD_DATES)])
        out = out.withColumn(
            "amount_usd", F.when(bad, F.raise_error(F.lit("injected failure"))).otherwise(F.col("amount_usd"))
        )
    return out


def counting_v2(df: DataFrame) -> DataFrame:
    with _calls_lock:
        CALLS.append(1)
    return to_silver_orders(df).withColumn("amount_usd", F.col("amount_usd") * 2)


def shifts_dates(df: DataFrame) -> DataFrame:
    """A buggy transform: writes rows into the next day's partition."""
    return to_silver_orders(df).withColumn("order_date", F.date_add("order_date", 1))


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    BAD_DATES.clear()


def snapshot(spark: Any, path: str) -> tuple[int, int, int]:
    """(rows, distinct order ids, checksum of every column): equal snapshots mean equal tables."""
    df = spark.read.format("delta").load(path)
    row = df.agg(
        F.count(F.lit(1)), F.countDistinct("order_id"), F.sum(F.xxhash64(*df.columns).cast("decimal(38,0)"))
    ).first()
    return int(row[0]), int(row[1]), int(row[2])


def run(lake: Lake, name: str, start: str, end: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("retries", 0)
    return backfill(pipeline=name, start=start, end=end, **kw).to_dict()


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_backfill_twice_gives_an_identical_table_and_the_rerun_skips_everything(lake: Lake, spark: Any) -> None:
    p = lake.make(counting)
    first = run(lake, p.name, "2024-01-01", "2024-01-04")
    assert sorted(first["completed"]) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert first["rows_written"] == 4 * 40
    before = snapshot(spark, lake.target)
    assert before[0] == before[1] == 160  # no duplicates

    CALLS.clear()
    again = run(lake, p.name, "2024-01-01", "2024-01-04")
    assert again["skipped"] == 4 and again["completed"] == [] and CALLS == []

    forced = run(lake, p.name, "2024-01-01", "2024-01-04", reprocess="all")
    assert len(forced["completed"]) == 4 and len(CALLS) == 2 + SCHEMA_CHECK  # two chunks of two days
    assert snapshot(spark, lake.target) == before


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_failed_partitions_do_not_stop_the_others_and_a_rerun_executes_exactly_them(lake: Lake) -> None:
    p = lake.make(counting)
    BAD_DATES.update({"2024-01-02", "2024-01-04", "2024-01-05"})
    state = backfill(
        pipeline=p.name, start="2024-01-01", end="2024-01-06", retries=0, max_concurrency=2, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(BackfillFailedError) as failure:
        state.result()
    err = failure.value
    assert set(err.failed) == BAD_DATES
    assert "injected failure" in err.errors["2024-01-04"]
    assert f"Resume with: backfill run {p.name} --start 2024-01-01 --end 2024-01-06" in str(err)
    current = Ledger(lake.ledger).current(p.name)
    assert {k for k, s in current.items() if s.status is Status.FAILED} == BAD_DATES
    assert {k for k, s in current.items() if s.status is Status.COMPLETE} == {"2024-01-01", "2024-01-03", "2024-01-06"}

    BAD_DATES.clear()
    CALLS.clear()
    summary = run(lake, p.name, "2024-01-01", "2024-01-06")
    assert len(CALLS) == 2 + SCHEMA_CHECK  # the failed days only, in two chunks ([02], [04, 05])
    assert sorted(summary["completed"]) == ["2024-01-02", "2024-01-04", "2024-01-05"]
    assert summary["skipped"] == 3
    assert all(s.status is Status.COMPLETE for s in Ledger(lake.ledger).current(p.name).values())


def _log_actions(target: str, version: int) -> list[dict[str, Any]]:
    log = Path(target) / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_a_partition_overwrite_touches_only_that_partitions_files(lake: Lake) -> None:
    p = lake.make(counting)
    run(lake, p.name, "2024-01-01", "2024-01-05")
    files_before = set(DeltaTable(lake.target).file_uris())

    summary = run(lake, p.name, "2024-01-03", "2024-01-03", reprocess="all")
    version = DeltaTable(lake.target).version()
    actions = _log_actions(lake.target, version)
    commit = next(a["commitInfo"] for a in actions if "commitInfo" in a)
    assert "partitions=2024-01-03" in commit["userMetadata"]
    assert commit["operationParameters"]["predicate"].count("2024-01-03") == 1
    touched = [a.get("add", a.get("remove"))["path"] for a in actions if "add" in a or "remove" in a]
    assert touched and all(path.startswith("order_date=2024-01-03/") for path in touched)
    assert any("remove" in a for a in actions) and any("add" in a for a in actions)

    files_after = set(DeltaTable(lake.target).file_uris())
    untouched = {f for f in files_before if "order_date=2024-01-03" not in f}
    assert untouched <= files_after  # every other partition's files are the same files
    ledger_versions = {s.partition: s for s in Ledger(lake.ledger).current(p.name).values()}
    assert summary["completed"] == ["2024-01-03"] and ledger_versions["2024-01-03"].status is Status.COMPLETE


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_a_new_transform_version_reruns_every_partition(lake: Lake, spark: Any) -> None:
    p1 = lake.make(counting, version="1")
    run(lake, p1.name, "2024-01-01", "2024-01-03")
    v1 = snapshot(spark, lake.target)
    CALLS.clear()
    p2 = lake.make(counting_v2, version="2")
    summary = run(lake, p2.name, "2024-01-01", "2024-01-03")
    assert len(CALLS) == 2 + SCHEMA_CHECK and len(summary["completed"]) == 3  # chunks [01, 02] and [03]
    assert snapshot(spark, lake.target) != v1
    assert {s.fingerprint for s in Ledger(lake.ledger).current(p2.name).values()} == {p2.fingerprint}


def test_ledger_loses_no_event_at_concurrency_4(lake: Lake) -> None:
    p = lake.make(counting)
    run(lake, p.name, "2024-01-01", "2024-01-08", max_concurrency=4)
    events = Ledger(lake.ledger).events(p.name).to_pylist()
    per_partition = Counter((e["partition"], e["status"]) for e in events)
    assert len(events) == 8 * 3
    assert all(
        per_partition[(f"2024-01-0{d}", s)] == 1 for d in range(1, 9) for s in ("PENDING", "RUNNING", "COMPLETE")
    )


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_cache_skips_completed_partitions_even_when_the_ledger_is_lost(lake: Lake) -> None:
    """The cache is the second line of resume: a lost or new ledger does not mean redoing work."""
    from pyarrow import fs

    from prefect_backfill.storage import arrow_filesystem

    p = lake.make(counting)
    first = run(lake, p.name, "2024-01-01", "2024-01-03")
    filesystem, ledger = arrow_filesystem(lake.ledger)  # the whole ledger, on the local disk or the store
    files = filesystem.get_file_info(fs.FileSelector(ledger, recursive=True))
    for info in files:
        if info.type == fs.FileType.File:
            filesystem.delete_file(info.path)
    CALLS.clear()
    summary = run(lake, p.name, "2024-01-01", "2024-01-03")
    assert len(CALLS) == SCHEMA_CHECK and sorted(summary["cached"]) == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert summary["rows_written"] == 120
    current = Ledger(lake.ledger).current(p.name)
    assert {s.status for s in current.values()} == {Status.COMPLETE}  # the ledger is rebuilt
    # Served from the cache, as typed fields: the run it was written by, and no error text.
    assert {(s.cached, s.cached_from, s.error) for s in current.values()} == {(True, first["run_id"], None)}


def test_output_rows_outside_the_partition_fail_it_without_retry_and_keep_old_data(lake: Lake, spark: Any) -> None:
    good = lake.make(counting, version="1")
    run(lake, good.name, "2024-01-01", "2024-01-02")
    before = snapshot(spark, lake.target)
    bad = lake.make(shifts_dates, version="2")
    with pytest.raises(BackfillFailedError) as failure:
        run(lake, bad.name, "2024-01-01", "2024-01-02", retries=2, retry_delay_seconds=0)
    assert (
        "wrote rows outside partition order_date=2024-01-01; nothing was committed"
        in failure.value.errors["2024-01-01"]
    )
    assert snapshot(spark, lake.target) == before
    events = Ledger(lake.ledger).events(bad.name).to_pylist()
    attempts = [e for e in events if e["status"] == "RUNNING" and e["version"] == "2"]
    assert len(attempts) == 2  # one attempt per partition: validation errors are not retried


def test_an_empty_source_partition_fails_instead_of_emptying_the_target(lake: Lake) -> None:
    p = lake.make(counting)
    with pytest.raises(BackfillFailedError) as failure:
        run(lake, p.name, "2024-01-08", "2024-01-09")
    assert failure.value.failed == ("2024-01-09",)
    assert "source partition order_date=2024-01-09 is empty" in failure.value.errors["2024-01-09"]


def test_ledger_is_queryable_with_spark_sql(lake: Lake, spark: Any) -> None:
    from prefect_backfill.engine.delta import register_ledger_views

    p = lake.make(counting)
    BAD_DATES.add("2024-01-02")
    with pytest.raises(BackfillFailedError):
        run(lake, p.name, "2024-01-01", "2024-01-03")
    register_ledger_views(spark, lake.ledger)
    rows = spark.sql(
        f"SELECT partition, status FROM backfill_progress WHERE pipeline = '{p.name}' ORDER BY partition"
    ).collect()
    assert [(r.partition, r.status) for r in rows] == [
        ("2024-01-01", "COMPLETE"),
        ("2024-01-02", "FAILED"),
        ("2024-01-03", "COMPLETE"),
    ]
