"""Checks and diffs as pure values: what a declaration accepts, how aggregated values become failures,
how diffs total and print. The Spark side is in tests/integration/test_checks_diff.py."""

from __future__ import annotations

import json

import pytest

from prefect_backfill.checks import Custom, Expect, NotNull, RowRatio, Unique, evaluate, validate
from prefect_backfill.diff import KeyChanges, PartitionDiff, diff_markdown, numeric_columns, run_diffs, totals
from prefect_backfill.errors import PipelineDefinitionError
from prefect_backfill.pipeline import Pipeline


def keep(df):  # type: ignore[no-untyped-def]
    return df


def test_evaluate_turns_aggregates_into_named_failures() -> None:
    checks = (RowRatio(0.9, 1.1), NotNull("id"), Unique("id"), Expect("amount >= 0"))
    assert (
        evaluate(checks, "2024-01-01", 100, 100, {"_bf_c1_bad": 0, "_bf_c2_keyed": 100, "_bf_c2_distinct": 100}) == []
    )
    failures = evaluate(
        checks,
        "2024-01-02",
        100,
        50,
        {"_bf_c1_bad": 3, "_bf_c2_keyed": 50, "_bf_c2_distinct": 48, "_bf_c3_bad": 7},
    )
    assert [f.check for f in failures] == ["row_ratio", "not_null:id", "unique:id", "expect:amount >= 0"]
    assert str(failures[0]) == "row_ratio: 50 rows out of 100 in (0.5), expected rows out/in between 0.9 and 1.1"
    assert "2 duplicate key row(s)" in str(failures[2]) and "7 row(s) where it is false" in str(failures[3])
    assert evaluate((RowRatio(min=0.5),), "k", 0, 0, {}) == []  # an empty source is its own check


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: RowRatio(), "needs min or max"),
        (lambda: RowRatio(2, 1), "above max"),
        (lambda: NotNull(), "at least one column"),
        (lambda: NotNull("bad name"), "not a plain column name"),
        (lambda: Unique("x;drop"), "not a plain column name"),
        (lambda: Expect("  "), "needs a boolean expression"),
        (lambda: Custom("bad label", lambda df: {}), "use letters"),
    ],
)
def test_bad_declarations_are_refused_when_made(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PipelineDefinitionError, match=message):
        make()


def test_validate_names_the_missing_column_and_the_unparsable_expression() -> None:
    def parse(expression: str) -> None:
        if ">>" in expression:
            raise ValueError("[PARSE_SYNTAX_ERROR] Syntax error at or near '>'")

    validate((NotNull("id"), Expect("a >= 0")), "p", ["id", "a"], parse)  # fine
    with pytest.raises(PipelineDefinitionError, match="names column 'idd'"):
        validate((NotNull("idd"),), "p", ["id"], parse)
    with pytest.raises(PipelineDefinitionError, match="PARSE_SYNTAX_ERROR"):
        validate((Expect("a >> 0"),), "p", ["a"], parse)
    with pytest.raises(PipelineDefinitionError, match="two checks are named"):
        validate((NotNull("id"), NotNull("id")), "p", ["id"], parse)


def test_a_pipeline_refuses_what_is_not_a_check_and_bad_key_columns() -> None:
    with pytest.raises(PipelineDefinitionError, match="is not a check"):
        Pipeline("p", "/a/s", "/a/t", "d", keep, "1", checks=("amount >= 0",))  # type: ignore[arg-type]
    with pytest.raises(PipelineDefinitionError, match="key column"):
        Pipeline("p", "/a/s", "/a/t", "d", keep, "1", key=("order id",))


def test_diffs_round_trip_total_and_print() -> None:
    a = PartitionDiff("2024-01-01", 40, 40, {"amount_usd": (100.0, 110.0)}, KeyChanges(0, 0, 39))
    b = PartitionDiff("2024-01-02", 0, 40, {"amount_usd": (None, 50.0)}, KeyChanges(40, 0, 0))
    assert PartitionDiff.from_json(a.partition, a.to_json()) == a
    total = totals([a, b])
    assert (total.rows_before, total.rows_after, total.sums["amount_usd"]) == (40, 80, (100.0, 160.0))
    assert total.keys == KeyChanges(40, 0, 39)
    text = diff_markdown("t", [a, b])
    assert "| 2024-01-01 | 40 → 40 | 100 → 110 (+10.0%) | 0 | 0 | 39 |" in text
    assert "| 2024-01-02 | 0 → 40 | – → 50 | 40 | 0 | 0 |" in text  # no percentage from nothing
    assert a.as_dict()["sums"]["amount_usd"]["change"] == pytest.approx(0.1)
    noisy = PartitionDiff("k", 2, 2, {"amount": (1_001_710.0, 1_001_710.0000001)}, KeyChanges(0, 0, 363_984))
    assert "| k | 2 → 2 | 1,001,710 → 1,001,710 | 0 | 0 | 363,984 |" in diff_markdown("t", [noisy])
    assert numeric_columns([("d", "date"), ("n", "bigint"), ("x", "decimal(10,2)"), ("s", "string")], ["d"]) == (
        "n",
        "x",
    )


def test_run_diffs_take_the_runs_latest_complete_event_per_partition() -> None:
    first = PartitionDiff("k", 1, 2).to_json()
    second = PartitionDiff("k", 1, 3).to_json()
    events = [
        {"run_id": "r", "status": "COMPLETE", "partition": "k", "diff": first},
        {"run_id": "r", "status": "COMPLETE", "partition": "k", "diff": second},  # a later attempt
        {"run_id": "other", "status": "COMPLETE", "partition": "j", "diff": first},
        {"run_id": "r", "status": "FAILED", "partition": "j", "diff": None},
    ]
    assert [d.rows_after for d in run_diffs(events, "r")] == [3]
    assert json.loads(second)["rows"] == [1, 3]
