"""The demo range on an object store: the whole ``backfill run`` process on S3 against the same run on local disk
and against one Spark job over the same rows on S3, with the S3 requests each made.

A real S3-compatible server (versitygw, :mod:`prefect_backfill.testing.object_store`) serves a folder on this
machine, so what is measured is the package's and the connectors' cost, not a network's. Each step is its
own process, timed from exec to exit, as a user runs it; requests are the server's request-log lines
written while the step ran.

    python -m bench.object_store                 # 182 days x 2,000 rows, once; writes docs/object-store-benchmarks.md
    python -m bench.object_store --days 30 --no-write
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from prefect_backfill.testing.object_store import ObjectStore, running_store

ROOT = Path(__file__).resolve().parents[1]
START = date(2024, 1, 1)
ONE_JOB = """
import sys
from prefect_backfill.demo import to_silver_orders
from prefect_backfill.engine.spark import get_spark
source, target = sys.argv[1], sys.argv[2]
spark = get_spark(object_store=source.startswith("s3"))
to_silver_orders(spark.read.format("delta").load(source)).write.format("delta").mode("overwrite").partitionBy(
    "order_date"
).save(target)
"""
GENERATE = """
import sys
from prefect_backfill.demo import generate_orders
print(generate_orders(sys.argv[1], sys.argv[2], sys.argv[3], rows_per_day=int(sys.argv[4])))
"""


@dataclass(frozen=True)
class Step:
    name: str
    wall_s: float
    flow_s: float | None
    requests: int
    chunks: int | None

    def row(self, baseline: float) -> str:
        flow = f"{self.flow_s:.1f}" if self.flow_s is not None else "–"
        chunks = str(self.chunks) if self.chunks is not None else "–"
        per_chunk = f"{self.requests / self.chunks:.0f}" if self.chunks and self.requests else "–"
        requests = str(self.requests) if self.requests else "–"
        return (
            f"| {self.name} | {self.wall_s:.1f} | {self.wall_s / baseline:.2f}x | {flow} | {chunks} | "
            f"{requests} | {per_chunk} |"
        )


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if b"| vgw |" in line)
    except OSError:
        return 0


def _run(name: str, argv: list[str], env: dict[str, str], log: Path) -> Step:
    before = _lines(log)
    started = time.monotonic()
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    out = done.stdout + done.stderr
    flow = re.search(r"rows written in ([0-9.]+)s", out)
    chunks = re.search(r"in (\d+) chunk\(s\)", out)
    return Step(
        name,
        wall,
        float(flow.group(1)) if flow else None,
        _lines(log) - before,
        int(chunks.group(1)) if chunks else None,
    )


def measure(store: ObjectStore, log: Path, work: Path, days: int, rows_per_day: int) -> list[Step]:
    end = (START + timedelta(days=days - 1)).isoformat()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PREFECT_API", "AWS_"))}
    base |= {
        "BACKFILL_CACHE_DIR": str(ROOT / ".cache"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        **store.env,
    }
    lakes = {"local disk": str(work / "lake"), "object store": "s3a://lake/bench"}
    py = sys.executable
    backfill = str(Path(py).parent / "backfill")
    for lake in lakes.values():
        subprocess.run([py, "-c", GENERATE, f"{lake}/bronze/orders", START.isoformat(), end, str(rows_per_day)],
                       env=base, cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    steps: list[Step] = []
    for where, lake in lakes.items():
        env = {
            **base,
            "BACKFILL_DEMO_LAKE": lake,
            "PREFECT_HOME": str(work / f"prefect-{len(steps)}"),
            "BACKFILL_RESULT_STORAGE_PATH": f"{lake}/results",
        }
        run = [backfill, "run", "demo_orders", "--start", START.isoformat(), "--end", end, "--yes"]
        steps.append(_run(f"`backfill run` on the {where} (fresh PREFECT_HOME)", run, env, log))
    one_job = [py, "-c", ONE_JOB, "s3a://lake/bench/bronze/orders", "s3a://lake/bench/one_job/orders"]
    steps.append(_run("one Spark job on the object store", one_job, base, log))
    return steps


def page(steps: list[Step], days: int, rows_per_day: int) -> str:
    baseline = steps[-1].wall_s
    when = time.strftime("%Y-%m-%d", time.gmtime())
    lines = [
        "# Object-store benchmarks",
        "",
        f"Measured {when} on this 2-core machine by `python -m bench.object_store` (one run, {days} days x "
        f"{rows_per_day:,} rows of the demo's bronze orders; versitygw serving a local folder, so no network is "
        "in the numbers). Each step is a whole process from exec to exit; ratios are to the one Spark job on the "
        "object store. Requests are the S3 server's request-log lines written during the step.",
        "",
        "| step | wall s | vs one job | flow s | chunks | S3 requests | requests per chunk |",
        "|---|---|---|---|---|---|---|",
        *(step.row(baseline) for step in steps),
        "",
        "Target (issue 'Real object storage'): the backfill on the store within 1.5x of one job on the store.",
    ]
    local, remote = steps[0], steps[1]
    if local.flow_s is not None and remote.flow_s is not None and remote.chunks:
        extra = (remote.flow_s - local.flow_s) / remote.chunks
        lines += ["", f"Fixed cost of a chunk on the store over one on local disk: {extra:.2f} s (flow time)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.object_store", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=182)
    parser.add_argument("--rows-per-day", type=int, default=2_000)
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/ alone")
    options = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    log = work / "versitygw.log"
    with running_store(ROOT / ".cache", work / "store", log=log) as store:
        store.bucket("lake")
        steps = measure(store, log, work, options.days, options.rows_per_day)
    text = page(steps, options.days, options.rows_per_day)
    print(text)
    if not options.no_write:
        (ROOT / "docs" / "object-store-benchmarks.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
