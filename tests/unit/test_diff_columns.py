"""A run's diff says which columns each partition gained: from the shapes the ledger recorded for the
partition's write before the run and for the run's own (the real run: tests/integration/test_schema_change.py)."""

from __future__ import annotations

from typing import Any

from prefect_backfill.diff import PartitionDiff, changed_columns, column_changes, run_diffs, table_rows, totals
from prefect_backfill.schema_change import Column, recorded_columns, shape_digest, shape_key, shape_text

V1 = [Column("order_id", "bigint"), Column("quantity", "int")]
V2 = [Column("quantity", "bigint"), Column("fx_rate", "double"), Column("order_id", "bigint")]
DIFF = PartitionDiff("x", 40, 40).to_json()


def event(partition: str, run: str, shape: str | None, diff: str | None = DIFF) -> dict[str, Any]:
    return {"partition": partition, "run_id": run, "status": "COMPLETE", "shape": shape, "diff": diff}


def test_the_recorded_shape_reads_back_as_columns_and_compares_as_the_digest_did() -> None:
    text = shape_text(V2)
    assert recorded_columns(text) == sorted(V2, key=lambda c: c.name)
    assert shape_key(text) == shape_digest(V2) == shape_digest(list(reversed(V2)))
    old_release = shape_digest(V1)  # what a ledger written before this release holds
    assert shape_key(old_release) == old_release and recorded_columns(old_release) is None


def test_a_runs_diff_names_the_columns_each_partition_gained_since_its_write_before() -> None:
    events = [
        event("2024-01-01", "r1", shape_text(V1)),
        event("2024-01-02", "r1", shape_digest(V1)),  # an older release: columns unknown
        event("2024-01-01", "r9", None, diff=None),  # served from the cache: wrote nothing, no shape
        event("2024-01-01", "r2", shape_text(V2)),
        event("2024-01-02", "r2", shape_text(V2)),
        event("2024-01-03", "r2", shape_text(V2)),  # first written by this run: nothing to compare
        event("2024-01-01", "r2", shape_text(V2)),  # a later attempt of the same run: still against r1's
    ]
    diffs = {d.partition: d for d in run_diffs(events, "r2")}
    assert diffs["2024-01-01"].columns == ("widens quantity from int to bigint", "adds fx_rate (double)")
    assert diffs["2024-01-02"].columns == () and diffs["2024-01-03"].columns == ()
    assert run_diffs(events, "r1")[0].columns == ()
    assert column_changes(shape_text(V2), shape_text(V2)) == ()

    shown = list(diffs.values())
    assert "columns: widens quantity from int to bigint; adds fx_rate (double)" in changed_columns(diffs["2024-01-01"])
    head, rows = table_rows(shown)
    assert head[-1] == "columns" and rows[0][-1] == "widens quantity from int to bigint; adds fx_rate (double)"
    assert rows[-1][-1] == "1 partition(s)" and totals(shown).columns == ("1 partition(s)",)
    assert diffs["2024-01-01"].as_dict()["columns"] == list(diffs["2024-01-01"].columns)
    assert "columns" not in diffs["2024-01-02"].as_dict()
