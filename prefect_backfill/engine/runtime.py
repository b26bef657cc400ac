"""Where the JVM side comes from: the JDK, pyspark's own Spark (its jars and launchers) and Delta's package.

The lowest engine module: the Spark session (:mod:`prefect_backfill.engine.spark`) and the Delta log store's
build (:mod:`prefect_backfill.engine.log_store`) both need these, and neither needs the other to know them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from prefect_backfill.errors import ConfigurationError

__all__ = ["DELTA_PACKAGE", "java_home", "spark_home"]

# delta-spark 4.4.0 is built for Spark 4.2 (the artifact name carries the Spark minor).
DELTA_PACKAGE = "io.delta:delta-spark_4.2_2.13:4.4.0"


def spark_home() -> Path:
    """The pyspark package folder: it ships ``bin/spark-submit``, ``bin/spark-class`` and Spark's jars
    (Spark Connect's server included), so it serves as ``SPARK_HOME`` for a master, a worker or a server."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise ConfigurationError("pyspark is not installed: run `make setup`")
    return Path(spec.origin).parent


def java_home() -> str:
    """``JAVA_HOME`` if set, else a JDK 17 where Debian/Ubuntu put it (Spark 4.2 runs on 17 or 21; a
    newer default ``java`` would not do), else empty (Spark then uses ``java`` from PATH)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    for candidate in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/java-17-openjdk-arm64"):
        if os.path.isdir(candidate):
            return candidate
    return ""
