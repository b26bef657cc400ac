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

Transform = Callable[["DataFrame"], "DataFrame"]

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
    """Sequential backfill with a Spark SQL progress table (by path: no metastore, no derby folder needed)."""

    def __init__(
        self, spark: SparkSession, source: str, target: str, progress_table: str, column: str, transform: Transform
    ) -> None:
        self.spark, self.source, self.target, self.column, self.transform = spark, source, target, column, transform
        self.progress = f"delta.`{progress_table}`"

    def _mark_running(self, key: str) -> None:
        self.spark.sql(
            f"""
            MERGE INTO {self.progress} AS t
            USING (SELECT {_sql_string(key)} AS `partition`) AS s
            ON t.`partition` = s.`partition`
            WHEN MATCHED THEN UPDATE SET
                status = 'RUNNING', started_at = current_timestamp(), finished_at = NULL, rows = NULL, error = NULL
            WHEN NOT MATCHED THEN INSERT (`partition`, status, started_at, finished_at, rows, error)
                VALUES (s.`partition`, 'RUNNING', current_timestamp(), NULL, NULL, NULL)
            """
        )

    def _mark_done(self, key: str, rows: int | None, error: str | None) -> None:
        """COMPLETE with its rows, or FAILED with its error."""
        if error is None:
            fields = f"status = 'COMPLETE', rows = {int(rows or 0)}, error = NULL"
        else:
            fields = f"status = 'FAILED', error = {_sql_string(error[:1000])}"
        where = f"`partition` = {_sql_string(key)}"
        self.spark.sql(f"UPDATE {self.progress} SET {fields}, finished_at = current_timestamp() WHERE {where}")

    def _overwrite_partition(self, day: date) -> int:
        from pyspark.sql import functions as F

        source = self.spark.read.format("delta").load(self.source).where(F.col(self.column) == F.lit(day))
        output = self.transform(source)
        rows = output.count()
        writer = output.write.format("delta").mode("overwrite").partitionBy(self.column)
        writer.option("replaceWhere", f"`{self.column}` = DATE '{day.isoformat()}'").save(self.target)
        return rows

    def _process(self, day: date) -> PartitionRecord:
        key = day.isoformat()
        t0 = time.perf_counter()
        self._mark_running(key)
        bookkeeping = time.perf_counter() - t0
        work_start = time.perf_counter()
        rows, error = None, None
        try:
            rows = self._overwrite_partition(day)
        except Exception as exc:  # the seed's rule: record the failure and go on to the next date
            error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        work = time.perf_counter() - work_start
        t1 = time.perf_counter()
        self._mark_done(key, rows, error)
        status = "COMPLETE" if error is None else "FAILED"
        return PartitionRecord(key, status, rows, work, bookkeeping + time.perf_counter() - t1, error)

    def run(self, start: str, end: str) -> list[PartitionRecord]:
        """Process every date from ``start`` to ``end`` (both inclusive, like the seed), one after another."""
        self.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {self.progress} (`partition` STRING, status STRING, started_at TIMESTAMP, "
            "finished_at TIMESTAMP, rows BIGINT, error STRING) USING DELTA"
        )
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        return [self._process(first + timedelta(days=i)) for i in range((last - first).days + 1)]
