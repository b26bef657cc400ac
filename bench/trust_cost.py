"""What checks and the before/after diff cost: one chunk, the same data, with and without them.

``.venv/bin/python -m bench.trust_cost [--days 30] [--rows-per-day 20000] [--repeats 5]``

One process, one warm JVM: a bronze table of ``days`` × ``rows_per_day`` demo orders, a silver target
written once (so every measured chunk overwrites real old rows, as a backfill does), then the same
``SparkDeltaEngine.process_chunk`` over all the days in one chunk for each configuration, round-robin
(``repeats`` rounds, so load drifts hit every configuration alike); the median per configuration:

- ``bare``: no checks, ``diff=False`` (what the package did before the trust features);
- ``checks``: NotNull + Unique + Expect + RowRatio (the demo's): one wider aggregation, plus a distinct count;
- ``diff``: sums of the numeric columns before and after (one more read of the old rows' summed columns);
- ``diff+key``: and keys added/removed/changed (a join of old and new keys with a row hash);
- ``all``: checks + diff + key (the demo pipeline).

Prints a Markdown table for docs/benchmarks.md and writes ``bench/out/trust_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from prefect_backfill.checks import Expect, NotNull, RowRatio, Unique

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    from prefect_backfill.demo import generate_orders, to_silver_orders, write_version_one
    from prefect_backfill.engine import get_engine
    from prefect_backfill.partitions import Grain, partitions_between
    from prefect_backfill.pipeline import Pipeline, TableRef

    root = OUT / "trust_cost"
    bronze, silver = str(root / "bronze"), str(root / "silver")
    start = "2024-01-01"
    end = partitions_between(start, "2024-12-31", Grain.DAY)[args.days - 1].key
    generate_orders(bronze, start, end, rows_per_day=args.rows_per_day)
    write_version_one(bronze, silver)
    parts = partitions_between(start, end, Grain.DAY)
    base = Pipeline("trust_cost", TableRef(bronze), TableRef(silver), "order_date", to_silver_orders, "2", diff=False)
    checks = (NotNull("order_id"), Unique("order_id"), Expect("amount_usd >= 0"), RowRatio(1.0, 1.0))
    configs: dict[str, Pipeline] = {
        "bare": base,
        "checks": replace(base, checks=checks),
        "diff": replace(base, diff=True),
        "diff+key": replace(base, diff=True, key=("order_id",)),
        "all": replace(base, diff=True, key=("order_id",), checks=checks),
    }
    engine = get_engine()
    for pipeline in configs.values():  # warm-up: one of each, not measured
        engine.process_chunk(pipeline, parts, commit_tag=f"warm {time.time_ns()}")
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.repeats):
        for name, pipeline in configs.items():
            t0 = time.perf_counter()
            engine.process_chunk(pipeline, parts, commit_tag=f"{name} {time.time_ns()}")
            seconds[name].append(time.perf_counter() - t0)
    bare = statistics.median(seconds["bare"])
    result: dict[str, Any] = {
        "days": args.days,
        "rows_per_day": args.rows_per_day,
        "repeats": args.repeats,
        "median_s": {name: statistics.median(v) for name, v in seconds.items()},
        "all_s": seconds,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "trust_cost.json").write_text(json.dumps(result, indent=2))
    print(f"| configuration | median s ({args.days} days × {args.rows_per_day:,} rows, one chunk) | vs bare |")
    print("|---|---|---|")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / bare:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
