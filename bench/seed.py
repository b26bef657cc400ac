"""A port of the seed's ``BackfillController``: the baseline the package must beat.

We do not have the seed's code; this follows its description. Sequential; per date it ``MERGE INTO``s a
RUNNING row into a Delta progress table with Spark SQL, reads only that source partition, applies the
transform, overwrites only that target partition with ``replaceWhere``, then ``UPDATE``s the row to
COMPLETE (rows, finished_at) or FAILED (error) and goes on to the next date. MERGE + UPDATE is timed as
the partition's bookkeeping: it is what the package's delta-rs ledger replaces.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["BackfillController", "PartitionRecord"]


@dataclass(frozen=True, slots=True)
class PartitionRecord:
    """What happened to one date, with the time split the benchmark reports."""

    partition: str
    status: str
    rows: int | None
    work_s: float
    bookkeeping_s: float
    error: str | None = None


def _sql_string(value: str) -> str:
    """A Spark SQL string literal (the seed spliced values into SQL text; keep that, but safely)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class BackfillController:
    """Sequential backfill with a Spark SQL progress table, as the seed did it."""

    def __init__(
        self,
        spark: SparkSession,
        source: str,
        target: str,
        progress_table: str,
        partition_column: str,
        transform: Callable[[DataFrame], DataFrame],
    ) -> None:
        self.spark = spark
        self.source = source
        self.target = target
        self.progress_table = progress_table
        self.partition_column = partition_column
        self.transform = transform

    @property
    def _progress(self) -> str:
        """The progress table by path: no metastore (and no derby folder) needed."""
        return f"delta.`{self.progress_table}`"

    def _ensure_progress_table(self) -> None:
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {self._progress} "
            "(`partition` STRING, status STRING, started_at TIMESTAMP, finished_at TIMESTAMP, rows BIGINT, "
            "error STRING) USING DELTA"
        )

    def _mark_running(self, key: str) -> None:
        self.spark.sql(
            f"""
            MERGE INTO {self._progress} AS t
            USING (SELECT {_sql_string(key)} AS `partition`) AS s
            ON t.`partition` = s.`partition`
            WHEN MATCHED THEN UPDATE SET
                status = 'RUNNING', started_at = current_timestamp(), finished_at = NULL, rows = NULL, error = NULL
            WHEN NOT MATCHED THEN INSERT (`partition`, status, started_at, finished_at, rows, error)
                VALUES (s.`partition`, 'RUNNING', current_timestamp(), NULL, NULL, NULL)
            """
        )

    def _mark_complete(self, key: str, rows: int) -> None:
        self.spark.sql(
            f"UPDATE {self._progress} SET status = 'COMPLETE', finished_at = current_timestamp(), "
            f"rows = {int(rows)}, error = NULL WHERE `partition` = {_sql_string(key)}"
        )

    def _mark_failed(self, key: str, error: str) -> None:
        self.spark.sql(
            f"UPDATE {self._progress} SET status = 'FAILED', finished_at = current_timestamp(), "
            f"error = {_sql_string(error[:1000])} WHERE `partition` = {_sql_string(key)}"
        )

    def _overwrite_partition(self, day: date) -> int:
        from pyspark.sql import functions as F

        column = self.partition_column
        source = self.spark.read.format("delta").load(self.source).where(F.col(column) == F.lit(day))
        output = self.transform(source)
        rows = output.count()
        (
            output.write.format("delta")
            .mode("overwrite")
            .option("replaceWhere", f"`{column}` = DATE '{day.isoformat()}'")
            .partitionBy(column)
            .save(self.target)
        )
        return rows

    def _process(self, day: date) -> PartitionRecord:
        key = day.isoformat()
        t0 = time.perf_counter()
        self._mark_running(key)
        bookkeeping = time.perf_counter() - t0
        work_start = time.perf_counter()
        try:
            rows = self._overwrite_partition(day)
        except Exception as exc:  # the seed's rule: record the failure and go on to the next date
            work = time.perf_counter() - work_start
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            t1 = time.perf_counter()
            self._mark_failed(key, error)
            return PartitionRecord(key, "FAILED", None, work, bookkeeping + time.perf_counter() - t1, error)
        work = time.perf_counter() - work_start
        t1 = time.perf_counter()
        self._mark_complete(key, rows)
        return PartitionRecord(key, "COMPLETE", rows, work, bookkeeping + time.perf_counter() - t1)

    def run(self, start: str, end: str) -> list[PartitionRecord]:
        """Process every date from ``start`` to ``end`` (both inclusive, like the seed), one after another."""
        self._ensure_progress_table()
        day, last = date.fromisoformat(start), date.fromisoformat(end)
        records: list[PartitionRecord] = []
        while day <= last:
            records.append(self._process(day))
            day += timedelta(days=1)
        return records
