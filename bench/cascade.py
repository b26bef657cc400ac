"""The downstream cascade's cost and what it saves: silver (daily) → gold (monthly revenue, a day → month
roll-up), the demo's two pipelines, in this process (``flows.backfill.backfill``, real Spark + Delta).

Two fixes of silver, each followed by what a user does for gold:

- a full fix (182 days): with the ``mark`` policy (the default) against ``--cascade none``: what marking
  costs the silver run (one ledger read and append per chunk and downstream pipeline), then gold's default
  run (the 6 marked months) against a gold rebuild by hand (``--reprocess all``, 6 months);
- a partial fix (5 days in 2 months): gold's default run rebuilds the 2 marked months; by hand a user
  either rebuilds all 6 (``--reprocess all``) or works out which months the days fall in.

    python -m bench.cascade               # 182 days x 2,000 rows; writes section L of docs/benchmarks.md
    python -m bench.cascade --no-docs --rows 200
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
OUT = ROOT / "bench" / "out" / "cascade"
HEADING = "## L. Downstream cascade"
FIRST, LAST = "2024-01-01", "2024-06-30"
PARTIAL = ["2024-02-03", "2024-02-17", "2024-05-06", "2024-05-20", "2024-05-31"]


def measure(rows_per_day: int, work: Path) -> dict[str, Any]:
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    from flows.backfill import backfill
    from prefect_backfill.cascade import RollUp, Upstream
    from prefect_backfill.demo import generate_orders, to_gold_revenue, to_silver_orders
    from prefect_backfill.ledger import Ledger
    from prefect_backfill.partitions import Grain
    from prefect_backfill.pipeline import Pipeline, TableRef
    from prefect_backfill.registry import register

    def silver_version(factor: float) -> Any:
        def fixed(orders: DataFrame) -> DataFrame:
            return to_silver_orders(orders).withColumn("amount_usd", F.round(F.col("amount") * F.lit(factor), 2))

        return fixed

    bronze, silver, gold = str(work / "bronze"), str(work / "silver" / "orders"), str(work / "gold" / "revenue")
    generate_orders(bronze, FIRST, LAST, rows_per_day=rows_per_day)

    def make_silver(version: str) -> Pipeline:
        return register(
            Pipeline(
                name="cascade_silver",
                source=TableRef(bronze),
                target=TableRef(silver),
                partition_column="order_date",
                transform=silver_version(1.0 + int(version) / 10),
                version=version,
            ),
            replace=True,
        )

    register(
        Pipeline(
            name="cascade_gold",
            source=TableRef(silver),
            target=TableRef(gold),
            partition_column="order_date",
            transform=to_gold_revenue,
            version="1",
            grain=Grain.MONTH,
            upstream=(Upstream("cascade_silver", RollUp()),),
        ),
        replace=True,
    )
    gold_ledger = Ledger(str(work / "gold" / "_backfill_progress"))

    def timed(**request: Any) -> tuple[float, int]:
        started = time.perf_counter()
        summary = backfill(retries=0, **request)
        return round(time.perf_counter() - started, 2), len(summary.completed)

    def stale() -> int:
        return sum(1 for s in gold_ledger.current("cascade_gold").values() if s.status.value == "STALE")

    make_silver("1")
    timed(pipeline="cascade_silver", start=FIRST, end=LAST)  # the state the daily jobs left
    timed(pipeline="cascade_gold", start=FIRST[:7], end=LAST[:7])
    results: dict[str, Any] = {"rows_per_day": rows_per_day, "runs": []}

    def record(label: str, run: tuple[float, int], marked: int | None = None) -> None:
        results["runs"].append({"run": label, "wall_s": run[0], "partitions": run[1], "gold_marked": marked})
        print(f"[cascade] {label}: {run}, gold marked {marked}", flush=True)

    make_silver("2")
    record(
        "silver, full fix, --cascade none",
        timed(pipeline="cascade_silver", start=FIRST, end=LAST, cascade="none"),
        stale(),
    )
    record(
        "gold by hand: --reprocess all", timed(pipeline="cascade_gold", start=FIRST[:7], end=LAST[:7], reprocess="all")
    )
    make_silver("3")
    record("silver, full fix, mark (default)", timed(pipeline="cascade_silver", start=FIRST, end=LAST), stale())
    record("gold's default run (the marked months)", timed(pipeline="cascade_gold", start=FIRST[:7], end=LAST[:7]))
    make_silver("4")
    record(
        "silver, 5 days, mark (default)", timed(pipeline="cascade_silver", partitions=PARTIAL, reprocess="all"), stale()
    )
    record("gold's default run (the marked months)", timed(pipeline="cascade_gold", start=FIRST[:7], end=LAST[:7]))
    record(
        "gold by hand: --reprocess all", timed(pipeline="cascade_gold", start=FIRST[:7], end=LAST[:7], reprocess="all")
    )
    return results


def render(results: dict[str, Any]) -> str:
    lines = [
        f"{HEADING}: what marking costs, what it saves ({results['measured']})",
        "",
        f"The demo's silver (182 days x {results['rows_per_day']:,} rows) and gold (revenue per month and country, a",
        "day → month roll-up of silver), built once; then each fix of silver followed by gold's run, in one",
        "process, warm Spark, in this order. `python -m bench.cascade`; one run, on the machine of the Method section.",
        "",
        "| run | wall (s) | partitions written | gold months marked STALE after it |",
        "|---|---:|---:|---:|",
    ]
    for r in results["runs"]:
        marked = "" if r["gold_marked"] is None else str(r["gold_marked"])
        lines.append(f"| {r['run']} | {r['wall_s']} | {r['partitions']} | {marked} |")
    lines += [
        "",
        "How to read it: the two full-fix silver runs differ by what marking costs (one read and one append of",
        "gold's ledger per silver commit, a few per run), which is below the run-to-run spread of one run each",
        "(about a second here, either way). Gold's default run takes exactly the marked months: all 6 after the",
        "full fix, the 2 the 5 days fall in after the partial one. At this size a gold run is one Spark job and",
        "one commit whatever it covers, so 2 months took no less than 6: what the mark buys here is that nobody",
        "has to work out which months a fix touched and that a stale gold month is visible (`status`, the",
        "calendar, an event); at real sizes gold's cost follows its months. Not measured: the `run` policy",
        "(downstream partitions in the same run as their upstream), which is not built yet.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cascade", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000, help="rows per day")
    parser.add_argument("--no-docs", action="store_true", help="results under bench/out only, docs/ untouched")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cascade-") as tmp:
        os.environ.setdefault("BACKFILL_RESULT_STORAGE_PATH", str(Path(tmp) / "results"))
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
