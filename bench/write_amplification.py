"""Write amplification of a partition overwrite, by target layout: what one chunk's commit rewrites on a
target partitioned by the day, liquid-clustered by it, or not partitioned at all.

On a partitioned target a ``replaceWhere`` swaps exactly the replaced days' files. On the other two it deletes
the replaced days' rows, and every file that also holds other days is rewritten with those other days' rows
(copied rows): after an ``OPTIMIZE`` (which clusters, or bin-packs, the days together) that can be most of the
table. Measured with the package itself (``flows.backfill.backfill``, in this process, real Spark + Delta):
30 days backfilled in chunks of 7, then ``OPTIMIZE``, then one day and then 7 days reprocessed; each commit's
add and remove actions are read from its ``_delta_log`` file, the copied rows from its operation metrics.

    python -m bench.write_amplification               # 30 days x 20,000 rows; writes section K of docs/benchmarks.md
    python -m bench.write_amplification --no-docs --rows 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.control_plane import write_docs

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "write_amplification"
HEADING = "## K. Write amplification"
LAYOUTS = ("partitioned", "clustered", "clustered, 1 MiB files", "unpartitioned")
#: ``OPTIMIZE``'s largest file (bytes) for the layout "clustered, 1 MiB files": a big table's many files in small.
SMALL_FILES = 1024 * 1024
FIRST, LAST = "2024-01-01", "2024-01-30"
CASES = (("1 day", ["2024-01-15"]), ("7 days", [f"2024-01-{d:02d}" for d in range(8, 15)]))


def commit_facts(table: str, version: int) -> dict[str, Any]:
    """Files and bytes one commit removed and added, its rows written and copied (its own metrics)."""
    text = (Path(table) / "_delta_log" / f"{version:020d}.json").read_text()
    facts = {"removed_files": 0, "removed_bytes": 0, "added_files": 0, "added_bytes": 0, "rows": 0, "copied": 0}
    for line in text.splitlines():
        action = json.loads(line)
        if "remove" in action:
            facts["removed_files"] += 1
            facts["removed_bytes"] += int(action["remove"].get("size") or 0)
        if "add" in action:
            facts["added_files"] += 1
            facts["added_bytes"] += int(action["add"]["size"])
        if "commitInfo" in action:
            metrics = action["commitInfo"].get("operationMetrics", {})
            facts["rows"] = int(metrics.get("numOutputRows", 0))
            facts["copied"] = int(metrics.get("numCopiedRows", 0))
    return facts


def measure(rows_per_day: int, work: Path) -> dict[str, Any]:
    from deltalake import DeltaTable

    from flows.backfill import backfill
    from prefect_backfill.demo import generate_orders, to_silver_orders
    from prefect_backfill.engine.spark import get_spark
    from prefect_backfill.pipeline import Pipeline, TableRef
    from prefect_backfill.registry import register

    spark = get_spark()
    bronze = str(work / "bronze")
    generate_orders(bronze, FIRST, LAST, rows_per_day=rows_per_day)
    results: dict[str, Any] = {"rows_per_day": rows_per_day, "layouts": {}}
    for layout in LAYOUTS:
        slug = "".join(c if c.isalnum() else "_" for c in layout)
        target = str(work / slug)
        if layout == "unpartitioned":
            to_silver_orders(spark.read.format("delta").load(bronze).limit(0)).write.format("delta").save(target)
        name = f"amplification_{slug}"
        register(
            Pipeline(
                name=name,
                source=TableRef(bronze),
                target=TableRef(target),
                partition_column="order_date",
                transform=to_silver_orders,
                version="1",
                cluster_by=("order_date",) if layout.startswith("clustered") else (),
            ),
            replace=True,
        )
        backfill(pipeline=name, start=FIRST, end=LAST, chunk_partitions=7, retries=0)
        if layout.endswith("1 MiB files"):
            spark.conf.set("spark.databricks.delta.optimize.maxFileSize", str(SMALL_FILES))
        try:
            spark.sql(f"OPTIMIZE delta.`{target}`").collect()
        finally:
            spark.conf.unset("spark.databricks.delta.optimize.maxFileSize")
        files_before = len(DeltaTable(target).file_uris())
        cases: dict[str, Any] = {}
        for label, days in CASES:
            started = time.perf_counter()
            backfill(pipeline=name, partitions=days, reprocess="all", chunk_partitions=7, retries=0)
            wall = time.perf_counter() - started
            facts = commit_facts(target, DeltaTable(target).version())
            facts["wall_s"] = round(wall, 1)
            facts["files_in_table"] = files_before
            cases[label] = facts
            files_before = len(DeltaTable(target).file_uris())
        results["layouts"][layout] = cases
        print(f"[write-amplification] {layout}: {cases}", flush=True)
    return results


def render(results: dict[str, Any]) -> str:
    rows_per_day = results["rows_per_day"]
    lines = [
        f"{HEADING}: what one chunk's commit rewrites, by target layout ({results['measured']})",
        "",
        f"30 days x {rows_per_day:,} rows of the demo's orders, backfilled by the package in chunks of 7 days, then",
        "`OPTIMIZE` (it clusters a clustered table, bin-packs an unpartitioned one, compacts each day of a",
        'partitioned one; "1 MiB files": OPTIMIZE\'s largest file set to 1 MiB, as a big table has many files),',
        "then the day 2024-01-15 and then the 7 days 2024-01-08..14 reprocessed (`--reprocess all`).",
        "One commit each; its add and remove actions from its `_delta_log` file, the rows copied from its operation",
        "metrics (`numCopiedRows`: other days' rows rewritten because they shared a file with a replaced day).",
        "`python -m bench.write_amplification`; one run, on the machine of the Method section.",
        "",
        "| layout | reprocessed | files in table | files removed | files added | bytes removed | bytes added"
        " | rows written (copied included) | other days' rows copied | wall (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for layout, cases in results["layouts"].items():
        for label, f in cases.items():
            lines.append(
                f"| {layout} | {label} | {f['files_in_table']} | {f['removed_files']} | {f['added_files']} | "
                f"{f['removed_bytes']:,} | {f['added_bytes']:,} | {f['rows']:,} | {f['copied']:,} | {f['wall_s']} |"
            )
    lines += [
        "",
        "How to read it: on the partitioned target a commit removes and adds the replaced days' files only. On",
        "the clustered and the unpartitioned ones, after an OPTIMIZE, the replaced days share files with the",
        "others, and the commit rewrites those files whole: the copied rows are the amplification, bounded by",
        "the size of the files that hold the replaced days, not by the table's (the 1 MiB row: a few files",
        "rewritten, where one file held the whole table above). Chunks of",
        "such a table commit one at a time (engine/committer.py), so a commit's cost is also the other chunks'",
        "wait. What to do about it: reprocess in chunks that follow the clustering (whole ranges), and OPTIMIZE",
        "after the backfill rather than during it.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.write_amplification", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows per day")
    parser.add_argument("--no-docs", action="store_true", help="results under bench/out only, docs/ untouched")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amplification-") as tmp:
        os.environ.setdefault("BACKFILL_RESULT_STORAGE_PATH", str(Path(tmp) / "results"))
        os.environ.setdefault("BACKFILL_LEDGER_PATH", str(Path(tmp) / "ledger"))
        results = measure(args.rows, Path(tmp))
    results["measured"] = time.strftime("%Y-%m-%d", time.gmtime())
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    section = render(results)
    (OUT / "section.md").write_text(section)
    if not args.no_docs:
        write_docs(section, heading=HEADING)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
