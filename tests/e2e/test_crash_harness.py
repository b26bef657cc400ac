"""The crash harness's own row reader: "no table yet" is an empty table, any other error is raised (an
unreadable silver must fail the check with its error, not pass as a table with no rows). delta-rs only:
no JVM, no server."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from deltalake.exceptions import DeltaError

from tests.e2e.crash_harness import read_rows

COLUMNS = ("order_id", "order_date")


def write(path: Path) -> None:
    table = pa.table({"order_id": [3, 1, 2], "order_date": [date(2024, 1, 2), date(2024, 1, 1), date(2024, 1, 1)]})
    write_deltalake(str(path), table, partition_by=["order_date"])


def test_no_table_yet_reads_as_no_rows(tmp_path: Path) -> None:
    assert read_rows(str(tmp_path / "never-written"), COLUMNS) == []
    (tmp_path / "killed-before-its-first-commit" / "_delta_log").mkdir(parents=True)
    assert read_rows(str(tmp_path / "killed-before-its-first-commit"), COLUMNS) == []


def test_a_table_reads_sorted_with_its_partition_column(tmp_path: Path) -> None:
    write(tmp_path / "t")
    assert read_rows(str(tmp_path / "t"), COLUMNS) == [
        (1, date(2024, 1, 1)),
        (2, date(2024, 1, 1)),
        (3, date(2024, 1, 2)),
    ]


def test_a_log_that_cannot_be_read_is_raised(tmp_path: Path) -> None:
    write(tmp_path / "t")
    (tmp_path / "t" / "_delta_log" / "00000000000000000001.json").write_text("not json\n")
    with pytest.raises(DeltaError):
        read_rows(str(tmp_path / "t"), COLUMNS)


def test_a_missing_column_is_raised(tmp_path: Path) -> None:
    write(tmp_path / "t")
    with pytest.raises(DeltaError, match="amount_usd_cents"):
        read_rows(str(tmp_path / "t"), (*COLUMNS, "amount_usd_cents"))
