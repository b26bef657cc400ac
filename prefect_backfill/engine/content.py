"""Per-partition digests of a table's *rows*, for targets whose files mix partitions (liquid-clustered or
unpartitioned: :class:`~prefect_backfill.engine.targets.TargetLayout`).

On a partitioned target a partition is its own set of files, and a digest of those files, read from the log,
says whether another writer changed it. On a clustered or unpartitioned one a file holds many days: a
commit that replaces one day rewrites files that hold others (their rows copied, nothing changed), an
``OPTIMIZE`` merges them all, and Delta's remove actions carry no statistics to say which days they held.
The log cannot tell which partition changed, so the digest is of the rows themselves: per partition, the
row count and the sum of a 64-bit hash of each row (``xxhash64`` over the columns in name order; a sum,
so the order of rows and files does not matter, and a column added later reads NULL, which the hash skips,
so adding a column changes no digest). Written by the chunk's count pass (no extra job), read again by
``backfill audit`` and ``backfill undo`` with one Spark job over the partitions they ask about.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from prefect_backfill.partitions import Grain, Partition
from prefect_backfill.snapshots import CONTENT_DIGEST, PartitionFiles, TableSnapshot, partition_key

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["HASH_SUM", "content_aggregate", "content_digest", "content_snapshot", "read_content"]

#: The aggregate's name in the chunk's count pass.
HASH_SUM = "_bf_content"


def _hashed(output: DataFrame) -> list[Column]:
    """The columns hashed, in name order: a map as its sorted entries (Spark hashes no map), a map nested
    deeper as its JSON (whose entry order Spark keeps as it reads it). The output's types are the table's:
    Delta refuses a write of another type (``DELTA_FAILED_TO_MERGE_FIELDS``, an ``int`` into a ``bigint``
    included), and a widened column is widened before the first chunk (:mod:`prefect_backfill.schema_change`)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import MapType

    kinds = {f.name: f.dataType for f in output.schema.fields}
    columns = []
    for name in sorted(kinds, key=str.lower):
        column = F.col("`" + name.replace("`", "``") + "`")
        if isinstance(kinds[name], MapType):
            column = F.array_sort(F.map_entries(column))
        elif "map<" in kinds[name].simpleString():
            column = F.to_json(F.struct(column))
        columns.append(column)
    return columns


def content_aggregate(output: DataFrame) -> Column:
    """The sum of the rows' hashes, for a ``groupBy(partition column).agg(...)`` beside the row count."""
    from pyspark.sql import functions as F

    return F.sum(F.xxhash64(*_hashed(output)).cast("decimal(38,0)")).alias(HASH_SUM)


def content_digest(rows: int, hash_sum: Decimal | int | None) -> str:
    """A partition's content digest from its row count and hash sum (:data:`CONTENT_DIGEST` first, so it is
    never compared with a digest of files)."""
    value = hashlib.sha256(f"{rows}:{hash_sum or 0}".encode()).hexdigest()[:16]
    return f"{CONTENT_DIGEST}{value}"


def content_snapshot(
    table: DataFrame,
    column: str,
    grain: Grain,
    *,
    table_id: str | None,
    version: int | None,
    location: str | None,
    keys: Sequence[Partition] | None = None,
    paths: Mapping[str, tuple[str, ...]] | None = None,
) -> TableSnapshot:
    """The snapshot of ``table`` (a DataFrame of the table at ``version``) by content digest, for the
    partitions ``keys`` (all when None): one grouped job. ``paths``: each partition's files, where known
    (the files whose statistics cover it: what an undo needs to exist)."""
    from pyspark.sql import functions as F

    from prefect_backfill.engine.predicates import chunk_condition

    if keys is not None:
        if not keys:
            return TableSnapshot(True, table_id, version, {}, location=location, content=True)
        table = table.where(chunk_condition(column, sorted(keys)))
    counted = table.groupBy(column).agg(F.count(F.lit(1)).alias("_bf_n"), content_aggregate(table)).collect()
    found: dict[str, tuple[int, Any]] = {}
    for row in counted:
        key = partition_key(row[column], grain)
        if key is not None:  # several values of one hour or month add up
            rows, total = found.get(key, (0, 0))
            found[key] = (rows + int(row["_bf_n"]), total + (row[HASH_SUM] or 0))
    partitions = {
        key: PartitionFiles(content_digest(rows, total), 0, rows, (paths or {}).get(key, ()))
        for key, (rows, total) in found.items()
    }
    return TableSnapshot(True, table_id, version, partitions, location=location, content=True)


def read_content(
    spark: Any, location: str, column: str, grain: Grain, version: int | None, keys: Sequence[Partition]
) -> TableSnapshot:
    """:func:`content_snapshot` of the Delta table stored at ``location`` (a path, or a catalog table's
    storage location) as of ``version`` (default: the latest), with each partition's files from the log."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    from prefect_backfill.engine.restore import read_at
    from prefect_backfill.pipeline import TableRef
    from prefect_backfill.storage import delta_options
    from prefect_backfill.tables import covering_files

    try:
        table = DeltaTable(location, version=version, storage_options=delta_options(location))
    except TableNotFoundError:
        return TableSnapshot(exists=False, location=location)
    except DeltaError:  # the log no longer reaches that version (cleaned up): nothing can be read at it
        return TableSnapshot.unknown()
    at = table.version()
    frame = read_at(spark, TableRef(location), at)
    return content_snapshot(
        frame,
        column,
        grain,
        table_id=str(table.metadata().id),
        version=at,
        location=location,
        keys=list(keys) or None,
        paths=covering_files(table, location, column, grain),
    )
