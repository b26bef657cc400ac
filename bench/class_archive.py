"""What Spark's class archive saves: one Spark start, a Delta write and a read back, with and without it.

``python -m bench.class_archive [--runs N]`` runs, alternately, N fresh Python processes that each start
the package's Spark session (``get_spark``), write 1,000 rows to a partitioned Delta table, read them
back aggregated and stop the JVM; half with ``BACKFILL_SPARK_CLASS_ARCHIVE=false``. Each is timed from
the parent: wall seconds and the CPU seconds of the whole child tree (the JVM is most of it). Run it
with ``JAVA_TOOL_OPTIONS=-XX:TieredStopAtLevel=1`` for the test suite's JVMs, without for users'.
``make setup`` must have written the archive (see :mod:`prefect_backfill.engine.class_archive`).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from prefect_backfill.engine.class_archive import archive_path
from prefect_backfill.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]
WORK = """
import sys
from pyspark.sql import functions as F
from prefect_backfill.engine.spark import get_spark, stop_spark
spark = get_spark()
rows = spark.range(1000).select("id", (F.col("id") % 6).alias("p"), (F.col("id") * 2.5).alias("amount"))
rows.write.format("delta").partitionBy("p").save(sys.argv[1])
spark.read.format("delta").load(sys.argv[1]).groupBy("p").sum("amount").collect()
stop_spark(jvm=True)
"""


def one(archive: bool, scratch: Path) -> tuple[float, float]:
    """Wall and CPU seconds (the child and everything it started) of one start, write and read."""
    env = {**os.environ, "BACKFILL_SPARK_CLASS_ARCHIVE": str(archive).lower()}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", WORK, str(scratch)], env=env, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.class_archive", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs with and runs without the archive")
    args = parser.parse_args(argv)
    path = archive_path(get_settings().cache_dir)
    if path is None or not path.is_file():
        print(f"no class archive at {path}: run `make setup` first", file=sys.stderr)
        return 2
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bench-class-archive-") as tmp:
        for i in range(args.runs):
            for archive in (False, True):
                results[archive].append(one(archive, Path(tmp) / f"t{i}-{archive}"))
    print(f"JAVA_TOOL_OPTIONS={os.environ.get('JAVA_TOOL_OPTIONS', '')!r}, {args.runs} runs each, median (all)")
    print("| driver | wall s | CPU s |\n|---|---|---|")
    for archive in (False, True):
        walls, cpus = zip(*results[archive], strict=True)
        label = "with the class archive" if archive else "without"
        print(
            f"| {label} | {statistics.median(walls):.1f} ({', '.join(f'{w:.1f}' for w in walls)}) "
            f"| {statistics.median(cpus):.1f} ({', '.join(f'{c:.1f}' for c in cpus)}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
