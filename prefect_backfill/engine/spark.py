"""One Spark session per process, created lazily from settings and reused by every task.

Delta's jars come from Maven Central through Spark's own Ivy resolver into ``<cache_dir>/ivy``, with
an ivysettings file that consults Maven Central only (a stray ``~/.m2`` pom without its jar otherwise
breaks resolution). Jars Spark already ships are excluded so the classpath holds one copy of each.
"""

from __future__ import annotations

import os
import sys
import threading
from importlib import resources
from typing import TYPE_CHECKING

from prefect_backfill.errors import ConfigurationError
from prefect_backfill.settings import BackfillSettings, get_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DELTA_PACKAGE", "get_spark", "spark_conf", "stop_spark"]

# delta-spark 4.4.0 is built for Spark 4.2 (the artifact name carries the Spark minor).
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"

# Transitive dependencies of delta-spark that pyspark's own jars already provide in newer versions.
_PROVIDED_BY_SPARK = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-jackson",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-annotations",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "io.airlift:aircompressor",
    "org.roaringbitmap:RoaringBitmap",
    "com.google.code.findbugs:jsr305",
    "commons-pool:commons-pool",
    "commons-logging:commons-logging",
    "org.scala-lang:scala-library",
    "org.locationtech.jts:jts-core",
)

_session: SparkSession | None = None
_lock = threading.Lock()


def spark_conf(settings: BackfillSettings) -> dict[str, str]:
    """The full Spark configuration for ``settings`` (pure, so it is unit-tested and printable)."""
    here = resources.files("prefect_backfill.engine")
    conf = {
        "spark.app.name": settings.spark_app_name,
        "spark.master": settings.spark_master,
        "spark.jars.packages": DELTA_PACKAGE,
        "spark.jars.ivy": str(settings.ivy_dir),
        "spark.jars.ivySettings": str(here.joinpath("ivysettings.xml")),
        "spark.jars.excludes": ",".join(_PROVIDED_BY_SPARK),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.driver.memory": settings.spark_driver_memory,
        # Partitions are small units: a handful of shuffle partitions and a one-task log replay
        # keep per-partition overhead low (Delta's default snapshotPartitions=50 costs seconds).
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(settings.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # A long backfill must not grow the driver: G1 gives memory back after collections, so the
        # JVM's footprint follows what is live (one partition at a time), not how long the run is.
        "spark.driver.extraJavaOptions": (
            "-XX:+UseG1GC -XX:G1PeriodicGCInterval=15000 -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"
        ),
        "spark.sql.adaptive.enabled": "true",
        # Backfill jobs run in the "backfill" pool (weight 1, FAIR inside), so partitions in flight
        # share the executors and, on a shared application, other pools can be given priority.
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": str(here.joinpath("fairscheduler.xml")),
        # Python workers (UDFs) run the driver's interpreter, not whatever `python3` is first on PATH.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    conf.update(settings.spark_conf)
    return conf


def get_spark() -> SparkSession:
    """The process's Spark session; the first call starts it (and fetches the jars if needed)."""
    global _session
    if _session is not None:
        return _session
    with _lock:
        if _session is None:
            _session = _start(get_settings())
    return _session


def _start(settings: BackfillSettings) -> SparkSession:
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    if "JAVA_HOME" not in os.environ:
        for candidate in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-arm64"):
            if os.path.isdir(candidate):
                os.environ["JAVA_HOME"] = candidate
                break
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        raise ConfigurationError(
            f"Spark did not start ({exc.getErrorClass()}): check JAVA_HOME (JDK 17 or 21) and that "
            f"{DELTA_PACKAGE} can be fetched from Maven Central into {settings.ivy_dir} (run `make setup`)"
        ) from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def stop_spark() -> None:
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
