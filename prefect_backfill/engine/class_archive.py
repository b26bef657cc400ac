"""A class-data-sharing archive of the Spark driver's classes: Spark starts faster on every run.

A Spark driver loads, verifies and links some 15,000 classes before its first job; on small partitions
that is most of a run's JVM time. Java's AppCDS (JDK 13+, ``-XX:ArchiveClassesAtExit``) writes the
classes one run loaded into an archive that later JVMs map instead of loading them again. Measured on
two cores: a Spark start, a Delta write and a read back took 35 s of JVM CPU and 28 s wall without the
archive, 24 s and 17.5 s with it (docs/benchmarks.md).

``backfill setup`` (``make setup``) writes the archive once, by running a small Delta workload in a
driver started with ``-XX:ArchiveClassesAtExit``; every later driver of this project's cache maps it.
Its name carries a digest of what the JVM validates it against (the JDK, and the name, size and time of
every jar of pyspark's Spark): an upgraded JDK or pyspark finds no archive under its name and runs as
before, until ``backfill setup`` writes one for it. A JVM that still cannot use an archive (say, another
class path) ignores it silently (``-Xshare:auto``, CDS logging off): the archive only ever saves time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from prefect_backfill.engine.runtime import DELTA_PACKAGE, java_home, spark_home
from prefect_backfill.settings import BackfillSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["archive_key", "archive_path", "driver_options", "dump_options", "exercise", "keep", "use_options"]

#: Never a word on the terminal about the archive: a JVM that cannot use it starts as without one.
_QUIET = ("-Xshare:auto", "-Xlog:cds=off", "-Xlog:cds+dynamic=off")


def archive_key(java_release: bytes, java_home_: str, jars: list[tuple[str, int, int]]) -> str:
    """The digest of what a JVM checks an archive against: the JDK (its ``release`` file and where it
    is), the jars of Spark's class path (name, size, modification time) and Delta's package."""
    material = repr((java_release, java_home_, sorted(jars), DELTA_PACKAGE)).encode()
    return hashlib.sha256(material).hexdigest()[:16]


def archive_path(cache_dir: Path) -> Path | None:
    """Where this JDK and this pyspark's archive lives in ``cache_dir`` (whether it exists or not);
    None if the JDK or Spark's jars cannot be read (then no archive is used or written)."""
    home = java_home()
    try:
        release = Path(home, "release").read_bytes() if home else b""
        with os.scandir(spark_home() / "jars") as entries:
            jars = [(e.name, (s := e.stat()).st_size, s.st_mtime_ns) for e in entries]
    except OSError:
        return None
    return cache_dir / "jvm" / f"spark-driver-{archive_key(release, home, jars)}.jsa"


def driver_options(settings: BackfillSettings, archive_to: Path | None = None) -> list[str]:
    """The archive's options for a driver JVM about to start: write one to ``archive_to`` if given
    (``backfill setup``), else map the existing one unless ``spark_class_archive`` is off."""
    if archive_to is not None:
        return dump_options(archive_to)
    return use_options(settings.cache_dir) if settings.spark_class_archive else []


def use_options(cache_dir: Path) -> list[str]:
    """Driver JVM options that map the archive, if ``backfill setup`` wrote one for this JDK and Spark."""
    path = archive_path(cache_dir)
    if path is None or not path.is_file():
        return []
    return [f"-XX:SharedArchiveFile={path.resolve()}", *_QUIET]


def dump_options(part: Path) -> list[str]:
    """Driver JVM options that write the classes it loaded to ``part`` when it exits."""
    part.parent.mkdir(parents=True, exist_ok=True)
    return [f"-XX:ArchiveClassesAtExit={part}", "-Xlog:cds=off", "-Xlog:cds+dynamic=off"]


def keep(part: Path, path: Path) -> bool:
    """Put the archive a driver wrote to ``part`` in its place (atomically: a JVM starting meanwhile
    sees no archive or the whole of it). False if the driver wrote none."""
    if not part.is_file() or part.stat().st_size == 0:
        part.unlink(missing_ok=True)
        return False
    part.replace(path)
    return True


def exercise(spark: SparkSession, scratch: Path) -> None:
    """What a backfill's driver does, on a few rows, so that its classes are the ones archived: create
    a partitioned Delta table, replace one partition with a ``replaceWhere`` (commit metadata set),
    read it back filtered, aggregate it per partition, read its history and its detail."""
    from pyspark.sql import functions as F

    table = str(scratch / "exercise")
    rows = spark.range(40).select(
        F.col("id"),
        F.expr("date_add(DATE'2024-01-01', CAST(id % 4 AS INT))").alias("day"),
        (F.col("id") * F.lit(1.5)).cast("decimal(18,2)").alias("amount"),
    )
    rows.write.format("delta").partitionBy("day").save(table)
    day = "day = DATE'2024-01-02'"
    (
        rows.where(day)
        .withColumn("amount", (F.col("amount") * 2).cast("decimal(18,2)"))
        .write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", day)
        .option("userMetadata", "class-archive")
        .save(table)
    )
    back = spark.read.format("delta").load(table)
    back.where(day).count()
    back.groupBy("day").agg(F.count("*"), F.sum("amount"), F.countDistinct("id"), F.max("amount")).collect()
    spark.sql(f"DESCRIBE HISTORY delta.`{table}`").collect()
    spark.sql(f"DESCRIBE DETAIL delta.`{table}`").collect()
