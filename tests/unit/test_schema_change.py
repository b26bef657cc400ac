"""A new transform version's schema against the target's, in pure logic: what is added, what is widened
in place, what is refused and the one line that says what to do instead; one reading of a Delta log's
schema JSON for Spark's side and delta-rs's. The engine applying it on real Spark + Delta:
tests/integration/test_schema_change.py."""

from __future__ import annotations

import json

import pytest

from prefect_backfill.schema_change import ChangeKind, Column, columns_of, compare, is_widening, shape_digest

TARGET = [Column("order_id", "bigint"), Column("amount", "int"), Column("order_date", "date")]


@pytest.mark.parametrize(
    ("old", "new", "widens"),
    [
        ("int", "bigint", True),
        ("tinyint", "int", True),
        ("bigint", "int", False),
        ("float", "double", True),
        ("double", "float", False),
        ("date", "timestamp_ntz", True),
        ("date", "timestamp", False),  # a zone would be invented for every old value
        ("decimal(10,2)", "decimal(12,2)", True),
        ("decimal(10,2)", "decimal(12,4)", True),
        ("decimal(10,2)", "decimal(11,4)", False),  # one digit fewer before the point
        ("decimal(10,2)", "decimal(10,2)", False),
        ("int", "string", False),
        ("int", "double", True),
        ("bigint", "double", False),  # not every long is a double
        ("int", "decimal(10,0)", True),
        ("int", "decimal(12,3)", False),  # nine digits before the point: not every int fits
        ("bigint", "decimal(20,0)", True),
        ("string", "decimal(10,0)", False),
    ],
)
def test_only_delta_widenings_are_widenings(old: str, new: str, widens: bool) -> None:
    assert is_widening(old, new) is widens


def test_added_and_widened_columns_are_taken_anything_else_is_refused_with_what_to_do() -> None:
    same = compare(TARGET, [Column("ORDER_ID", "bigint"), Column("order_date", "date"), Column("amount", "int")])
    assert not same and same.refused == ()  # names as Spark matches them, order does not matter

    change = compare(TARGET, [*TARGET[:1], Column("amount", "bigint"), TARGET[2], Column("fx_rate", "double")])
    assert [(c.kind, c.column) for c in change.changes] == [
        (ChangeKind.WIDENED, "amount"),
        (ChangeKind.ADDED, "fx_rate"),
    ]
    assert change.refused == () and [str(c) for c in change.changes] == [
        "widens amount from int to bigint",
        "adds fx_rate (double)",
    ]

    bad = compare(TARGET, [Column("order_id", "string"), Column("order_date", "date")])
    assert [(c.kind, c.column) for c in bad.refused] == [
        (ChangeKind.RETYPED, "order_id"),
        (ChangeKind.DROPPED, "amount"),
    ]
    line = bad.refusal("orders", "/lake/silver/orders")
    assert "\n" not in line
    assert line.startswith(
        "the transform of orders changes order_id from bigint to string; no longer produces amount (int), which "
        "the target /lake/silver/orders cannot take partition by partition:"
    )
    assert (
        "F.lit(None).cast(<type>)" in line and "cast the column back" in line and line.endswith("nothing was written")
    )
    widening = change.widening_refusal("orders", "/lake/silver/orders")
    assert widening.startswith("the transform of orders widens amount from int to bigint: the target")
    assert "\n" not in widening and "set widen_types=True on the pipeline" in widening


def test_one_reading_of_the_logs_schema_json_for_spark_and_delta_rs() -> None:
    schema = {
        "type": "struct",
        "fields": [
            {"name": "a", "type": "integer", "nullable": True, "metadata": {}},
            {"name": "b", "type": "long", "nullable": False, "metadata": {"delta.typeChanges": []}},
            {"name": "s", "type": {"type": "struct", "fields": [{"name": "x", "type": "short"}]}, "nullable": True},
            {"name": "l", "type": {"type": "array", "elementType": "byte", "containsNull": True}, "nullable": True},
            {"name": "m", "type": {"type": "map", "keyType": "string", "valueType": "decimal(10,2)"}, "nullable": True},
        ],
    }
    assert columns_of(json.dumps(schema)) == [
        Column("a", "int"),
        Column("b", "bigint"),
        Column("s", "struct<x:smallint>"),
        Column("l", "array<tinyint>"),
        Column("m", "map<string,decimal(10,2)>"),
    ]


def test_the_shape_digest_is_of_names_and_types_not_order() -> None:
    assert shape_digest(TARGET) == shape_digest(list(reversed(TARGET)))
    assert shape_digest(TARGET) != shape_digest([*TARGET, Column("fx_rate", "double")])
    assert shape_digest(TARGET) != shape_digest([Column("order_id", "string"), *TARGET[1:]])
