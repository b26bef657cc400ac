"""Checks before commit and the before/after diff, on real Spark + Delta + Prefect.

A partition that fails a declared check is FAILED with the check's name and what was observed, and its
old rows stay exactly as they were, while the other partitions of the same chunk complete. Every
overwritten partition's diff (rows, sums, keys) is in the ledger and on `backfill diff`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.checks import Custom, Expect, NotNull, RowRatio, Unique
from prefect_backfill.cli import run_cli
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.diff import PartitionDiff
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.ledger import Ledger
from prefect_backfill.planning import Status
from tests.integration.conftest import LAKES, Lake

pytestmark = pytest.mark.spark

DAYS = ("2024-01-01", "2024-01-04")
CHECKS = (Expect("amount_usd >= 0"), NotNull("order_id"), Unique("order_id"), RowRatio(0.9, 1.1))


def version_one(df: DataFrame) -> DataFrame:
    """amount_usd = amount (the bug the demo's version 2 fixes)."""
    return to_silver_orders(df).withColumn("amount_usd", F.col("amount"))


def broken(df: DataFrame) -> DataFrame:
    """Negative amounts on the 2nd, NULL ids on the 3rd, duplicated rows on the 4th: only the 1st is good."""
    out = to_silver_orders(df)
    day = F.col("order_date")
    out = out.withColumn(
        "amount_usd",
        F.when(day == F.lit("2024-01-02").cast("date"), -F.col("amount_usd")).otherwise(F.col("amount_usd")),
    )
    out = out.withColumn(
        "order_id", F.when(day == F.lit("2024-01-03").cast("date"), F.lit(None)).otherwise(F.col("order_id"))
    )
    return out.unionByName(out.where(day == F.lit("2024-01-04").cast("date")))


def rows(spark: Any, path: str, day: str) -> list[tuple[Any, ...]]:
    df = spark.read.format("delta").load(path).where(F.col("order_date") == F.lit(day).cast("date"))
    return sorted(tuple(r) for r in df.collect())


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_failed_checks_keep_the_old_rows_and_name_the_check(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    good = lake.make(version_one, version="1", checks=CHECKS)
    assert backfill(pipeline=good.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()["ok"]
    before = {day: rows(spark, lake.target, day) for day in ("2024-01-02", "2024-01-03", "2024-01-04")}

    bad = lake.make(broken, version="2", checks=CHECKS)
    with pytest.raises(BackfillFailedError) as failed:
        backfill(pipeline=bad.name, start=DAYS[0], end=DAYS[1], retries=0, max_concurrency=1)
    assert set(failed.value.failed) == {"2024-01-02", "2024-01-03", "2024-01-04"}
    states = Ledger(lake.ledger).current(bad.name)
    assert states["2024-01-01"].status is Status.COMPLETE and states["2024-01-01"].version == "2"
    assert states["2024-01-02"].check_name == "expect:amount_usd >= 0"
    assert "40 row(s) where it is false" in (states["2024-01-02"].error or "")
    assert states["2024-01-03"].check_name == "not_null:order_id"
    # the 4th has 80 rows for 40 in: both the duplicate key and the row ratio fail; the first one is named
    assert states["2024-01-04"].check_name == "unique:order_id"
    assert "40 duplicate key row(s)" in (states["2024-01-04"].error or "")
    for day, old in before.items():
        assert rows(spark, lake.target, day) == old  # exactly as they were

    # status shows the check and what was observed
    capsys.readouterr()
    run_cli(["status", bad.name, "--json"])
    shown = {f["partition"]: f for f in json.loads(capsys.readouterr().out)["failed"]}
    assert shown["2024-01-03"]["check"] == "not_null:order_id" and "NULL" in shown["2024-01-03"]["error"]


def test_a_custom_check_and_a_row_ratio_fail_only_their_partitions(lake: Lake, spark: Any) -> None:
    def no_big_orders(output: DataFrame) -> dict[Any, str]:
        found = output.where(F.col("amount") > 900).groupBy("order_date").count().collect()
        return {
            r["order_date"]: f"{r['count']} order(s) above 900" for r in found if str(r["order_date"]) == "2024-01-03"
        }

    def halves_the_second(df: DataFrame) -> DataFrame:
        out = to_silver_orders(df)
        second = F.col("order_date") == F.lit("2024-01-02").cast("date")
        return out.where(~second | (F.col("order_id") % 2 == 0))

    pipeline = lake.make(halves_the_second, checks=(RowRatio(min=0.9), Custom("no_big_orders", no_big_orders)))
    with pytest.raises(BackfillFailedError) as failed:
        backfill(pipeline=pipeline.name, start=DAYS[0], end=DAYS[1], retries=0, max_concurrency=1)
    assert set(failed.value.failed) == {"2024-01-02", "2024-01-03"}
    states = Ledger(lake.ledger).current(pipeline.name)
    assert states["2024-01-02"].check_name == "row_ratio" and "20 rows out of 40 in" in (
        states["2024-01-02"].error or ""
    )
    assert states["2024-01-03"].check_name == "no_big_orders" and "above 900" in (states["2024-01-03"].error or "")
    assert {states[d].status for d in ("2024-01-01", "2024-01-04")} == {Status.COMPLETE}


def test_bad_check_declarations_are_one_line_and_write_nothing(lake: Lake, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    for checks, words in [
        ((NotNull("order_idd"),), "names column 'order_idd'"),
        ((Expect("amount_usd >>= 0"),), "is not a boolean expression"),
        ((Expect("amount_usd + 1"),), "not boolean"),
    ]:
        pipeline = lake.make(to_silver_orders, checks=checks)
        code = run_cli(["run", pipeline.name, "--start", DAYS[0], "--end", DAYS[0], "--retries", "0"])
        err = capsys.readouterr().err.strip()
        assert code == 2, err
        assert words in err and len(err.splitlines()) == 1, err
        assert not Path(lake.target).exists()  # nothing written, not even the empty target


@pytest.mark.parametrize("lake", LAKES, indirect=True)
def test_the_diff_of_version_one_to_two_is_recorded_per_partition(
    lake: Lake, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    v1 = lake.make(version_one, version="1", key=("order_id",))
    first = backfill(pipeline=v1.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    events = Ledger(lake.ledger).events(v1.name).to_pylist()
    created = [e for e in events if e["status"] == "COMPLETE"]
    assert all(json.loads(e["diff"])["rows"] == [0, 40] for e in created)  # a new target: nothing before
    assert all(e["replaced_version"] == e["table_version"] - 1 for e in created)

    v2 = lake.make(to_silver_orders, version="2", key=("order_id",))
    second = backfill(pipeline=v2.name, start=DAYS[0], end=DAYS[1], retries=0).to_dict()
    assert first["ok"] and second["ok"]
    states = Ledger(lake.ledger).events(v2.name).to_pylist()
    latest = {e["partition"]: e for e in states if e["status"] == "COMPLETE" and e["run_id"] == second["run_id"]}
    assert sorted(latest) == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    for key, event in latest.items():
        diff = PartitionDiff.from_json(key, event["diff"])
        assert (diff.rows_before, diff.rows_after) == (40, 40) and event["rows_before"] == 40
        before, after = diff.sums["amount_usd"]
        assert before is not None and after is not None and after == pytest.approx(before * 1.1, rel=1e-3)
        assert diff.sums["amount"][0] == diff.sums["amount"][1]  # untouched column, same sum
        bronze = spark.read.format("delta").load(lake.bronze).where(F.col("order_date") == F.lit(key).cast("date"))
        changed = bronze.where(F.round(F.col("amount") * 1.1, 2) != F.col("amount")).count()  # 0.00 stays 0.00
        assert diff.keys is not None and (diff.keys.added, diff.keys.removed, diff.keys.changed) == (0, 0, changed)

    assert run_cli(["diff", v2.name]) == 0  # the latest run by default
    out = capsys.readouterr().out
    assert "+10.0%" in out and "2024-01-04" in out and "total" in out
    assert run_cli(["diff", v2.name, "--run", first["run_id"], "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == first["run_id"] and len(data["partitions"]) == 4
    assert data["total"]["rows_before"] == 0 and data["total"]["rows_after"] == 160
    assert run_cli(["diff", v2.name, "--run", "no-such-run"]) == 2
    assert "no-such-run" in capsys.readouterr().err
