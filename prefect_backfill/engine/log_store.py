"""A Delta log store that keeps commits from several Spark drivers on S3 apart, built from its source.

Delta's default S3 store (``S3SingleDriverLogStore``) assumes one driver: two drivers committing version N
of the same table can both "succeed" (the second PUT replaces ``_delta_log/N.json``) and a commit vanishes.
``ConditionalPutLogStore`` (``logstore/ConditionalPutLogStore.java``, shipped with the package) creates each
commit with an S3 conditional PUT (``If-None-Match: *``, Hadoop S3A 3.5+), so the loser of the race gets
the ``FileAlreadyExistsException`` Delta retries on.

Delta ships no such store, so the package compiles its one class here, once per source version, with the
JDK's ``javac`` against the Delta and Hadoop jars already on the machine (the Ivy cache, pyspark's jars).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from importlib import resources
from pathlib import Path

from prefect_backfill.engine.runtime import DELTA_PACKAGE, java_home, spark_home
from prefect_backfill.errors import ConfigurationError

__all__ = ["LOG_STORE_CLASS", "log_store_jar"]

LOG_STORE_CLASS = "io.prefectbackfill.delta.ConditionalPutLogStore"
_SOURCE = "ConditionalPutLogStore.java"
_DELTA_VERSION = DELTA_PACKAGE.rsplit(":", 1)[1]
# Fixed entry times: the same source makes the same jar bytes.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def log_store_jar(cache_dir: Path) -> Path:
    """``<cache_dir>/jars/backfill-logstore-<source sha>.jar``, compiled on first use (``javac --release 17``).

    Safe with several processes at once: each builds in its own temporary folder and the jar appears by an
    atomic rename, so nobody ever sees half a jar.
    """
    source = resources.files("prefect_backfill.engine").joinpath("logstore", _SOURCE).read_bytes()
    digest = hashlib.sha256(source).hexdigest()[:12]
    jars = cache_dir / "jars"
    jar = jars / f"backfill-logstore-{digest}.jar"
    if jar.is_file():
        return jar
    classpath = [_delta_storage_jar(cache_dir), *_hadoop_jars()]
    javac = _javac()
    jars.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".logstore-", dir=jars) as tmp:
        work = Path(tmp)
        (work / _SOURCE).write_bytes(source)
        classes = work / "classes"
        command = [javac, "--release", "17", "-nowarn", "-encoding", "UTF-8", "-d", str(classes)]
        command += ["-cp", os.pathsep.join(str(path) for path in classpath), str(work / _SOURCE)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip())
            raise ConfigurationError(
                f"the Delta log store did not compile ({first.strip()[:300]}): check JAVA_HOME is a JDK 17 or 21 "
                "and that the Delta jars match this package (run `make setup`)"
            )
        partial = work / jar.name
        _write_jar(classes, partial)
        os.replace(partial, jar)
    return jar


def _write_jar(classes: Path, jar: Path) -> None:
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF", _ZIP_TIME), "Manifest-Version: 1.0\r\n\r\n")
        for path in sorted(classes.rglob("*.class")):
            info = zipfile.ZipInfo(path.relative_to(classes).as_posix(), _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, path.read_bytes())


def _delta_storage_jar(cache_dir: Path) -> Path:
    """delta-storage (``io.delta.storage.LogStore``), where Spark's Ivy resolver put it."""
    ivy = cache_dir / "ivy"
    for candidate in (
        ivy / "jars" / f"io.delta_delta-storage-{_DELTA_VERSION}.jar",
        ivy / "cache" / "io.delta" / "delta-storage" / "jars" / f"delta-storage-{_DELTA_VERSION}.jar",
    ):
        if candidate.is_file():
            return candidate
    raise ConfigurationError(
        f"delta-storage-{_DELTA_VERSION}.jar is not in {ivy}: fetch Delta's jars first (`make setup`)"
    )


def _hadoop_jars() -> list[Path]:
    """Hadoop's client API (``FileSystem``, ``Path``), from pyspark's own jars."""
    found = sorted((spark_home() / "jars").glob("hadoop-client-api-*.jar"))
    if not found:
        raise ConfigurationError(
            f"no hadoop-client-api jar in {spark_home() / 'jars'}: reinstall pyspark (`make setup`)"
        )
    return found[-1:]


def _javac() -> str:
    home = java_home()
    javac = Path(home) / "bin" / "javac" if home else None
    if javac is not None and javac.is_file():
        return str(javac)
    found = shutil.which("javac")
    if found:
        return found
    raise ConfigurationError(
        f"no javac in {home or 'PATH'}: the Delta log store is compiled on first use; "
        "install a JDK 17 (e.g. openjdk-17-jdk-headless) and set JAVA_HOME to it"
    )
