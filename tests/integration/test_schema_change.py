"""A new version that changes the schema, on real Spark + Delta, over 8 days of which 3 are reprocessed
first: a widening is refused until the pipeline allows it (a table feature); then the target gains the
added column once (the 3 have it, the other 5 read NULL) and the column widened in place (old files read
as the wider type); `status` counts the 5 of the old shape (delta-rs reads the widened table's log, no
JVM); a default run brings them all to the new shape. A version that drops a column is refused with one
line, exit 2, and nothing is written. The same for an added column at the issue's scale: 5 of 182 days."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.cli import main
from prefect_backfill.demo import generate_orders, to_silver_orders
from prefect_backfill.ledger import Ledger
from prefect_backfill.pipeline import TableRef
from tests.integration.conftest import BRONZE_END, BRONZE_START, Lake

pytestmark = pytest.mark.spark

FIRST_THREE = ["2024-01-02", "2024-01-04", "2024-01-06"]


def v1(orders: DataFrame) -> DataFrame:
    return to_silver_orders(orders).withColumn("quantity", F.lit(1).cast("int"))


def v2(orders: DataFrame) -> DataFrame:
    """Adds fx_rate, widens quantity to bigint."""
    return to_silver_orders(orders).withColumn("quantity", F.lit(1).cast("bigint")).withColumn("fx_rate", F.lit(1.1))


def v3(orders: DataFrame) -> DataFrame:
    """Drops customer_id."""
    return v2(orders).drop("customer_id")


def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["backfill", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_added_and_widened_columns_reach_the_table_once_and_a_dropped_column_is_refused(
    lake: Lake, spark: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = lake.make(v1, version="1")
    backfill(pipeline=first.name, start=BRONZE_START, end=BRONZE_END, retries=0)
    days = sorted(Ledger(lake.ledger).current(first.name))
    assert len(days) == 8

    # Widening is a table feature (a protocol upgrade): refused unless the pipeline allows it.
    refused = lake.make(v2, version="2")
    version = DeltaTable(lake.target).version()
    code, out, err = cli(monkeypatch, capsys, "run", refused.name, "--partitions", ",".join(FIRST_THREE))
    assert code == 2 and err.strip().count("\n") == 0, (out, err)
    assert f"the transform of {refused.name} widens quantity from int to bigint: " in err
    assert "set widen_types=True on the pipeline" in err and DeltaTable(lake.target).version() == version

    second = lake.make(v2, version="2", widen_types=True)
    summary = backfill(pipeline=second.name, partitions=FIRST_THREE, retries=0, max_concurrency=2).to_dict()
    assert sorted(summary["completed"]) == FIRST_THREE
    table = spark.read.format("delta").load(lake.target)
    assert dict(table.dtypes)["quantity"] == "bigint" and dict(table.dtypes)["fx_rate"] == "double"
    by_day = {
        str(r["order_date"]): (r["with_rate"], r["n"], r["q"])
        for r in table.groupBy("order_date")
        .agg(F.count("fx_rate").alias("with_rate"), F.count(F.lit(1)).alias("n"), F.sum("quantity").alias("q"))
        .collect()
    }
    assert {d for d, (with_rate, n, _) in by_day.items() if with_rate == n} == set(FIRST_THREE)
    assert {d for d, (with_rate, _, _) in by_day.items() if with_rate == 0} == set(days) - set(FIRST_THREE)
    assert all(q == n for _, n, q in by_day.values())  # old files read as bigint, values kept
    # One metadata commit per change before the first chunk (not a schema change per chunk's commit).
    operations = [h["operation"] for h in DeltaTable(lake.target).history()]
    assert operations.count("ADD COLUMNS") == 1 and operations.count("CHANGE COLUMN") == 1, operations

    # The run's diff says what each partition gained, from the shapes the ledger recorded.
    code, out, _ = cli(monkeypatch, capsys, "diff", second.name, "--json")
    assert code == 0
    reshaped = {d["partition"]: d.get("columns") for d in json.loads(out)["partitions"]}
    gained = ["widens quantity from int to bigint", "adds fx_rate (double)"]
    assert reshaped == {day: gained for day in FIRST_THREE}, reshaped

    code, out, _ = cli(monkeypatch, capsys, "status", second.name, "--json")
    assert code == 0
    old = json.loads(out)["old_shape"]
    assert old == sorted(set(days) - set(FIRST_THREE))
    code, out, _ = cli(monkeypatch, capsys, "status", second.name)
    assert code == 0 and "OLD SCHEMA 5 partition(s) written before the target's columns changed" in out

    summary = backfill(pipeline=second.name, start=BRONZE_START, end=BRONZE_END, retries=0).to_dict()
    assert sorted(summary["completed"]) == sorted(set(days) - set(FIRST_THREE))  # stale: written by version 1
    assert spark.read.format("delta").load(lake.target).where(F.col("fx_rate").isNull()).count() == 0
    code, out, _ = cli(monkeypatch, capsys, "status", second.name, "--json")
    assert json.loads(out)["old_shape"] == []

    third = lake.make(v3, version="3")
    version = DeltaTable(lake.target).version()
    events = len(Ledger(lake.ledger).events(third.name))
    code, out, err = cli(monkeypatch, capsys, "run", third.name, "--start", BRONZE_START, "--end", BRONZE_END)
    assert code == 2, (out, err)
    line = err.strip()
    assert line.count("\n") == 0, err
    assert line.startswith(f"error: the transform of {third.name} no longer produces customer_id (bigint)"), line
    assert "nothing was written" in line
    assert DeltaTable(lake.target).version() == version
    assert len(Ledger(lake.ledger).events(third.name)) == events


def test_an_added_column_over_5_of_182_days_then_the_default_run_brings_the_other_177(
    lake: Lake, spark: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's scale: half a year of days, a version that adds a column run over 5 of them first."""
    bronze = str(tmp_path / "bronze182")
    generate_orders(bronze, "2024-01-01", "2024-06-30", rows_per_day=3)
    first = lake.make(v1, version="1", source=TableRef(bronze))
    backfill(pipeline=first.name, start="2024-01-01", end="2024-06-30", retries=0, max_concurrency=2)
    days = sorted(Ledger(lake.ledger).current(first.name))
    assert len(days) == 182
    five = days[::40][:5]

    adds = lake.make(v1_with_rate, version="2", source=TableRef(bronze))
    summary = backfill(pipeline=adds.name, partitions=five, retries=0).to_dict()
    assert sorted(summary["completed"]) == five
    with_rate = {
        str(r["order_date"])
        for r in spark.read.format("delta").load(lake.target).where(F.col("fx_rate").isNotNull()).collect()
    }
    assert with_rate == set(five)  # the other 177 read NULL: their files predate the column
    code, out, _ = cli(monkeypatch, capsys, "status", adds.name, "--json")
    assert code == 0 and json.loads(out)["old_shape"] == sorted(set(days) - set(five))
    code, out, _ = cli(monkeypatch, capsys, "status", adds.name)
    assert "OLD SCHEMA 177 partition(s) written before the target's columns changed" in out

    summary = backfill(pipeline=adds.name, start="2024-01-01", end="2024-06-30", retries=0).to_dict()
    assert len(summary["completed"]) == 177 and not set(summary["completed"]) & set(five)
    assert spark.read.format("delta").load(lake.target).where(F.col("fx_rate").isNull()).count() == 0
    code, out, _ = cli(monkeypatch, capsys, "status", adds.name, "--json")
    assert json.loads(out)["old_shape"] == []


def v1_with_rate(orders: DataFrame) -> DataFrame:
    """Version 1 plus fx_rate (an added column, no widening)."""
    return v1(orders).withColumn("fx_rate", F.lit(1.1))
