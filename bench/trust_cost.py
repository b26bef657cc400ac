"""What checks and the before/after diff cost: one chunk, the same data, with and without them.

The ``trust`` scenario (``python -m bench.child trust``), one process, one warm JVM: a bronze table of demo
orders, a silver target written once (so every measured chunk overwrites real old rows, as a backfill does),
then the same ``SparkDeltaEngine.process_chunk`` over all the days in one chunk for each configuration,
round-robin (``repeats`` rounds, so load drifts hit every configuration alike); the median per configuration:

- ``bare``: no checks, ``diff=False`` (what the package did before the trust features);
- ``checks``: NotNull + Unique + Expect + RowRatio (the demo's): one wider aggregation, plus a distinct count;
- ``diff``: sums of the numeric columns before and after (one more read of the old rows' summed columns);
- ``diff+key``: and keys added/removed/changed (a join of old and new keys with a row hash);
- ``all``: checks + diff + key (the demo pipeline).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

__all__ = ["run_trust"]


def run_trust(start: str, end: str, rows_per_day: int, repeats: int) -> dict[str, Any]:
    from prefect_backfill.checks import Expect, NotNull, RowRatio, Unique
    from prefect_backfill.demo import generate_orders, to_silver_orders, write_version_one
    from prefect_backfill.engine import get_engine
    from prefect_backfill.engine.delta import SparkDeltaEngine
    from prefect_backfill.partitions import Grain, partitions_between
    from prefect_backfill.pipeline import Pipeline, TableRef
    from prefect_backfill.settings import get_settings

    root = get_settings().data_dir / "trust_cost"
    bronze, silver = str(root / "bronze"), str(root / "silver")
    generate_orders(bronze, start, end, rows_per_day=rows_per_day)
    write_version_one(bronze, silver)
    parts = partitions_between(start, end, Grain.DAY)
    base = Pipeline("trust_cost", TableRef(bronze), TableRef(silver), "order_date", to_silver_orders, "2", diff=False)
    checks = (NotNull("order_id"), Unique("order_id"), Expect("amount_usd >= 0"), RowRatio(1.0, 1.0))
    configs = {"bare": base, "checks": replace(base, checks=checks), "diff": replace(base, diff=True)}
    configs["diff+key"] = replace(base, diff=True, key=("order_id",))
    configs["all"] = replace(base, diff=True, key=("order_id",), checks=checks)
    engine = get_engine()
    assert isinstance(engine, SparkDeltaEngine), "this benchmark measures Spark + Delta (BACKFILL_ENGINE=spark)"
    for pipeline in configs.values():  # warm-up: one of each, not measured
        engine.process_chunk(pipeline, parts, commit_tag=f"warm {time.time_ns()}")
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    t0 = time.perf_counter()
    for _ in range(repeats):
        for name, pipeline in configs.items():
            t1 = time.perf_counter()
            engine.process_chunk(pipeline, parts, commit_tag=f"{name} {time.time_ns()}")
            seconds[name].append(time.perf_counter() - t1)
    medians = {name: statistics.median(v) for name, v in seconds.items()}
    out = {"days": len(parts), "rows_per_day": rows_per_day, "repeats": repeats, "median_s": medians}
    return out | {"all_s": seconds, "run_s": time.perf_counter() - t0}
