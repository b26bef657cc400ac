"""What a run shows in the Prefect UI, read back through the Prefect client."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flows.backfill import backfill
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.errors import BackfillFailedError
from prefect_backfill.reporting import artifact_key
from tests.integration.conftest import Lake

pytestmark = pytest.mark.spark


def fails_on_the_2nd(df: DataFrame) -> DataFrame:
    bad = F.col("order_date") == F.lit(date(2024, 1, 2))
    return to_silver_orders(df).withColumn(
        "amount_usd", F.when(bad, F.raise_error(F.lit("injected failure"))).otherwise(F.col("amount_usd"))
    )


def latest(key: str) -> Any:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    return max(found, key=lambda a: a.created)


def test_progress_table_calendar_and_summary_artifacts(lake: Lake) -> None:
    p = lake.make(fails_on_the_2nd)
    state = backfill(
        pipeline=p.name, start="2024-01-01", end="2024-01-03", retries=0, max_concurrency=2, return_state=True
    )
    assert state.is_failed()
    with pytest.raises(BackfillFailedError):
        state.result()
    run_id = state.state_details.flow_run_id

    progress = latest(artifact_key(p.name, "progress"))
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert progress.flow_run_id == run_id
    assert "3 of 3 partitions (100%)" in progress.description and "1 failed" in progress.description

    table = latest(artifact_key(p.name, "partitions"))
    rows = {row["partition"]: row for row in _table_rows(table.data)}
    assert rows["2024-01-01"]["status"] == "COMPLETE" and rows["2024-01-01"]["rows_out"] == 40
    assert rows["2024-01-02"]["status"] == "FAILED" and "injected failure" in rows["2024-01-02"]["error"]
    assert rows["2024-01-03"]["attempt"] == 1 and rows["2024-01-03"]["version"] == "1"

    calendar = latest(artifact_key(p.name, "calendar"))
    assert "January 2024" in calendar.data and "2 ❌" in calendar.data and "1 ✅" in calendar.data
    assert "✅ complete: 2" in calendar.data and "❌ failed: 1" in calendar.data

    summary = latest(artifact_key(p.name, "summary"))
    assert "Resume with `backfill run" in summary.data

    diff = latest(artifact_key(p.name, "diff"))  # what the run changed: the two days it wrote, and the total
    assert diff.flow_run_id == run_id and "| 2024-01-01 | 0 → 40 |" in diff.data and "2024-01-02 |" not in diff.data
    assert "| total | 0 → 80 |" in diff.data and "amount_usd" in diff.data


def _table_rows(data: Any) -> list[dict[str, Any]]:
    import json

    parsed = json.loads(data) if isinstance(data, str) else data
    return list(parsed)
