"""Which targets a partition overwrite can use, and how its chunks commit there: the pure rule of
:func:`prefect_backfill.engine.targets.target_layout` (real tables: tests/integration/test_data_column_targets.py)."""

from __future__ import annotations

import json

import pytest

from prefect_backfill.engine import TableInfo
from prefect_backfill.engine.targets import TargetLayout, target_layout
from prefect_backfill.errors import PipelineDefinitionError, TargetLayoutError
from prefect_backfill.pipeline import Pipeline


def schema(*names: str) -> str:
    return json.dumps(
        {"type": "struct", "fields": [{"name": n, "type": "long", "nullable": True, "metadata": {}} for n in names]}
    )


PIPELINE = Pipeline("layouts", "/lake/bronze", "/lake/silver", "order_date", lambda df: df, "1")


def test_partitioned_by_the_column_commits_in_parallel_and_a_clustered_or_plain_table_one_at_a_time() -> None:
    partitioned = TableInfo(True, "t", ("order_date",), schema("order_date", "n"))
    assert target_layout(partitioned, PIPELINE) is TargetLayout.PARTITIONED
    assert target_layout(TableInfo(True, "t", ("order_date", "country"), None), PIPELINE) is TargetLayout.PARTITIONED
    plain = TableInfo(True, "t", (), schema("order_date", "n"))
    assert target_layout(plain, PIPELINE) is TargetLayout.DATA_COLUMN and plain.mixes_partitions()
    assert not partitioned.mixes_partitions() and not TableInfo(False).mixes_partitions()


def test_other_partitioning_or_no_such_column_is_refused_with_what_to_do() -> None:
    with pytest.raises(
        TargetLayoutError, match=r"is partitioned by customer_id, not by order_date: .* \(cluster_by=\)"
    ):
        target_layout(TableInfo(True, "t", ("customer_id",), schema("order_date")), PIPELINE)
    with pytest.raises(TargetLayoutError, match=r"partitioned by nothing and has no column order_date \(it has n\)"):
        target_layout(TableInfo(True, "t", (), schema("n")), PIPELINE)


def test_cluster_by_is_checked_like_every_column_name() -> None:
    clustered = Pipeline("c", "/a", "/b", "order_date", lambda df: df, "1", cluster_by="order_date")
    assert clustered.cluster_by == ("order_date",)
    with pytest.raises(PipelineDefinitionError, match="cluster_by column"):
        Pipeline("c", "/a", "/b", "order_date", lambda df: df, "1", cluster_by=("order date; drop",))
