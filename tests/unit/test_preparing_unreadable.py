"""A table the plan cannot read is one line naming it (``preparing._snapshot``), never the reading
library's text alone; catalog tables keep Spark's own errors. The object-store case (the store asked
what is wrong) is tested on a real server in tests/integration/test_object_store_permissions.py."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_backfill.errors import BackfillError, LedgerError, TableUnreadableError
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.preparing import _snapshot


class _Refusing:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def snapshot(self, table: TableRef, column: str, grain: Any, version: int | None = None) -> Any:
        raise self.error


def _pipeline(source: str) -> Pipeline:
    return Pipeline("unreadable", source, "/tmp/nowhere/target", "order_date", lambda df: df, "1")


def test_a_path_table_that_cannot_be_read_is_one_line_naming_it() -> None:
    pipeline = _pipeline("/data/bronze/orders")
    error = OSError("Kernel error -> The operation lacked the necessary privileges\nsecond line")
    with pytest.raises(TableUnreadableError) as raised:
        _snapshot(_Refusing(error), pipeline.source, pipeline, "source")  # type: ignore[arg-type]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("source table /data/bronze/orders of pipeline unreadable cannot be read (")
    assert "check the permissions on it" in message
    assert raised.value.__cause__ is error


def test_the_packages_own_errors_and_catalog_tables_errors_pass_unchanged() -> None:
    pipeline = _pipeline("/data/bronze/orders")
    own = LedgerError("the ledger says so")
    with pytest.raises(LedgerError):
        _snapshot(_Refusing(own), pipeline.source, pipeline, "source")  # type: ignore[arg-type]
    catalog = Pipeline("catalog", "bronze.orders", "silver.orders", "order_date", lambda df: df, "1")
    with pytest.raises(RuntimeError) as raised:
        _snapshot(_Refusing(RuntimeError("spark")), catalog.source, catalog, "source")  # type: ignore[arg-type]
    assert not isinstance(raised.value, BackfillError)
