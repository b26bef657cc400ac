"""The driver of every run starts from the class archive ``make setup`` wrote (see
:mod:`prefect_backfill.engine.class_archive`): its classes come from the archive, not from the jars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prefect_backfill.engine.class_archive import archive_path

ROOT = Path(__file__).resolve().parents[2]
START = (
    "from prefect_backfill.engine.spark import get_spark, stop_spark; "
    "print(get_spark().range(3).count()); stop_spark(jvm=True)"
)


def _classes_from_the_archive(tmp_path: Path, **env: str) -> list[str]:
    log = tmp_path / "class-load.log"
    conf = {"spark.driver.extraJavaOptions": f"-Xlog:class+load=info:file={log}"}
    environ = {**os.environ, "BACKFILL_SPARK_CONF": json.dumps(conf), **env}
    done = subprocess.run([sys.executable, "-c", START], env=environ, cwd=ROOT, capture_output=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == b"3", done.stderr[-2000:]
    return [line for line in log.read_text().splitlines() if "source: shared objects file (top)" in line]


def test_the_driver_loads_sparks_classes_from_the_archive_setup_wrote(tmp_path: Path) -> None:
    archive = archive_path(Path(os.environ["BACKFILL_CACHE_DIR"]))
    assert archive is not None and archive.is_file(), f"`make setup` writes {archive}"
    shared = _classes_from_the_archive(tmp_path)
    assert any(" org.apache.spark.SparkContext " in line for line in shared), shared[:5]
    assert len(shared) > 5000, len(shared)  # Spark's, Delta's classes on the app class path: thousands
