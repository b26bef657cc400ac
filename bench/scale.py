"""The scale benchmark: ``.venv/bin/python bench/scale.py [--quick] [--only GROUPS_OR_NAMES]``
(``make bench-scale``; options in :mod:`bench.driver`). Writes ``bench/out/scale/results.json``,
``docs/scale-benchmarks.md`` and ``docs/scale-benchmarks.png``. Four questions:

1. ``cap``: what the shared cap (one global concurrency limit held for the whole run) costs against a bare
   thread pool, and what a limit acquired per partition would cost instead;
2. ``orch``: orchestration cost per partition: plain loop vs the flow on a thread pool, on Dask, in chunks;
3. ``speedup``: speedup vs max_concurrency 1/2/4/8 for I/O-bound (sleeping) and real Spark + Delta partitions;
4. ``hourly``: 43,848 hourly partitions (5 years): plan, run in chunks, plan again, resume.

Runs that measure a Prefect task run *per partition* pass ``chunk_partitions=1``; each scenario starts from
its own copy of one migrated Prefect database; one disturbed by other processes is measured again.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (bench/scale.py): make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.driver import Bronze, Scenario, Suite, main
from bench.harness import ROOT, Result
from bench.render import ok, verdict
from bench.run import end_of

__all__ = ["ORCH_KINDS", "SUITE", "derive"]

START = "2024-01-01"
CAP_OVERHEAD_TARGET = 0.10
PLAN_TARGET_S = 1.0
RESUME_TARGET_S = 60.0
ORCH_KINDS = ("loop_engine", "loop_ledger", "thread", "chunked", "dask")


@dataclass(frozen=True)
class Params:
    """Sizes of every scenario; ``--quick`` shrinks them all (a smoke run, not a measurement)."""

    cap_partitions: int = 180
    cap_seconds: float = 0.2
    cap_repeats: int = 3
    per_partition_partitions: int = 180
    orch_partitions: int = 200
    io_partitions: int = 64
    io_seconds: float = 0.5
    concurrencies: tuple[int, ...] = (1, 2, 4, 8)
    spark_days: int = 16
    spark_concurrencies: tuple[int, ...] = (1, 2, 4, 8)
    spark_repeats: int = 2
    bronze_days: int = 16
    bronze_rows_per_day: int = 2_000
    hour_start: str = "2020-01-01"
    hour_end: str = "2024-12-31"
    hour_chunk_partitions: int = 400  # the default
    quick: bool = False


QUICK: dict[str, Any] = {"cap_partitions": 20, "cap_repeats": 1, "per_partition_partitions": 8, "orch_partitions": 20}
QUICK |= {"io_partitions": 8, "io_seconds": 0.2, "spark_days": 4, "spark_concurrencies": (1, 2), "spark_repeats": 1}
QUICK |= {"hour_end": "2020-01-31", "hour_chunk_partitions": 100, "quick": True}


def params(quick: bool) -> Params:
    return Params(**QUICK) if quick else Params()


def _sleep(seconds: float, coordinate: str | None = None, **extra: str) -> dict[str, str]:
    env = {"BACKFILL_ENGINE": "prefect_backfill.testing:SleepEngine", "BENCH_PARTITION_SECONDS": str(seconds)}
    return env | ({"BACKFILL_COORDINATE": coordinate} if coordinate else {}) | extra


def _flow(pipeline: str, end: str, concurrency: int, chunk: int = 1, start: str = START) -> tuple[str, ...]:
    """A ``flow`` run's arguments; ``chunk`` is the flow's ``chunk_partitions`` (1: a task run per partition)."""
    argv = ("--pipeline", pipeline, "--start", start, "--end", end, "--concurrency", str(concurrency))
    return (*argv, "--chunk-partitions", str(chunk))


def plan(p: Params) -> list[Scenario]:
    """Every measurement, in run order. Cap variants alternate so that drift in the machine's load hits both
    alike; Spark levels take turns the same way; the hourly steps share one data folder."""
    runs: list[Scenario] = []
    meta: dict[str, Any]

    def add(
        name: str, label: str, argv: tuple[str, ...], env: dict[str, str], process: str = "flow", **meta: Any
    ) -> None:
        bronze = "demo" if meta.get("kind") == "spark" else None  # the group is the name's first word
        runs.append(Scenario(name, name.split("_")[0], process, label, argv, env, bronze=bronze, meta=meta))

    cap: dict[str, Any] = {"partitions": p.cap_partitions, "seconds": p.cap_seconds, "concurrency": 2}
    cap_argv, seconds = _flow("bench_noop_day", end_of(START, p.cap_partitions), 2), p.cap_seconds
    for i in range(1, p.cap_repeats + 1):
        label = "bare thread pool (BACKFILL_COORDINATE=false)"
        add(f"cap_bare_{i}", label, cap_argv, _sleep(seconds, "false"), **cap, variant="bare", repeat=i)
        label, argv = "shared cap (default: one limit held for the run)", (*cap_argv, "--trace-coordination")
        add(f"cap_shared_{i}", label, argv, _sleep(seconds, "true"), **cap, variant="shared", repeat=i)
    label = "anti-pattern: a global limit (2) acquired per partition"
    argv = _flow("bench_noop_day", end_of(START, p.per_partition_partitions), 2)
    env = _sleep(seconds, "false", BENCH_PER_PARTITION_LIMIT="2")
    env["BACKFILL_ENGINE"] = "prefect_backfill.testing:PerPartitionLimitEngine"
    per = cap | {"partitions": p.per_partition_partitions, "variant": "per_partition", "repeat": 1}
    add("cap_per_partition", label, argv, env, **per)

    n = p.orch_partitions
    loop = ("--pipeline", "bench_noop_day", "--start", START, "--end", end_of(START, n))
    add("orch_loop_engine", "plain loop: engine call alone", loop, _sleep(0), "loop", kind="loop_engine", partitions=n)
    label = "plain loop: engine + the task's ledger appends"
    add("orch_loop_ledger", label, (*loop, "--ledger"), _sleep(0), "loop", kind="loop_ledger", partitions=n)
    dask = {"BACKFILL_TASK_RUNNER": "dask", "BACKFILL_DASK_WORKERS": "2"}
    flows = [
        ("thread", "flow, thread pool, chunk_partitions 1, max_concurrency 2", 1, {}),
        ("chunked", "flow, thread pool, default chunks, max_concurrency 2", 400, {}),
        ("dask", "flow, Dask (2 worker processes), chunk_partitions 1, max_concurrency 2", 1, dask),
    ]
    for kind, label, chunk, extra in flows:
        for size in (1, n):
            argv, meta = _flow("bench_noop_day", end_of(START, size), 2, chunk), {"kind": kind, "partitions": size}
            add(f"orch_{kind}_{size}", f"{label}, {size} partition(s)", argv, _sleep(0, **extra), **meta)

    io_end, env = end_of(START, p.io_partitions), _sleep(p.io_seconds, "false")
    for c in p.concurrencies:
        label, argv = f"I/O-bound ({p.io_seconds} s sleep), max_concurrency {c}", _flow("bench_noop_day", io_end, c)
        meta = {"kind": "io", "concurrency": c, "partitions": p.io_partitions, "seconds": p.io_seconds}
        add(f"speedup_io_c{c}", label, argv, env, **meta)
    spark_end = end_of(START, p.spark_days)
    for i in range(1, p.spark_repeats + 1):  # repeats go round all levels in turn: drift hits each alike
        for c in p.spark_concurrencies:
            label, argv = f"Spark + Delta (bench_orders), max_concurrency {c}", _flow("bench_orders", spark_end, c)
            name = f"speedup_spark_c{c}" + (f"_r{i}" if i > 1 else "")
            meta = {"kind": "spark", "concurrency": c, "partitions": p.spark_days, "repeat": i}
            add(name, label, (*argv, "--warm-spark"), {"BACKFILL_COORDINATE": "false"}, **meta)

    plan_argv = ("--pipeline", "bench_noop_hour", "--start", p.hour_start, "--end", p.hour_end)
    run_argv = _flow("bench_noop_hour", p.hour_end, 2, p.hour_chunk_partitions, start=p.hour_start)
    steps = [
        ("plan_empty", "plan", "plan, empty ledger", plan_argv),
        ("run", "flow", f"run, chunk_partitions {p.hour_chunk_partitions}, max_concurrency 2", run_argv),
        ("plan_full", "plan", "plan again, all complete", plan_argv),
        ("resume", "flow", "resume: the same flow call again", run_argv),
    ]
    for step, kind, label, argv in steps:
        fresh = step == "plan_empty"
        runs.append(Scenario(f"hourly_{step}", "hourly", kind, label, argv, _sleep(0), folder="hourly", fresh=fresh))
    return runs


def bronzes(p: Params, out: Path) -> dict[str, Bronze]:
    """The Spark speedup's source: ``bronze_days`` × ``bronze_rows_per_day`` demo orders."""
    argv = (
        "generate",
        "--start",
        START,
        "--end",
        end_of(START, p.bronze_days),
        "--rows-per-day",
        str(p.bronze_rows_per_day),
    )
    wanted = {"start": START, "days": p.bronze_days, "rows_per_day": p.bronze_rows_per_day}
    return {"demo": Bronze(out / "bronze" / "orders", argv, wanted)}


def env(out: Path) -> dict[str, str]:
    modules = "bench.pipelines,prefect_backfill.testing.pipelines"
    return {"BACKFILL_PIPELINE_MODULES": modules, "BENCH_SOURCE_PATH": str(out / "bronze" / "orders")}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def error(run: Result | None) -> str:
    if not run:
        return "not run"
    text = str(run.get("error") or f"return code {run.get('returncode')}")
    return text.replace("|", "/").replace("\n", " ")[:160]


def _cap(runs: list[Result]) -> Result:
    by_variant: dict[str, list[Result]] = {}
    for r in runs:
        by_variant.setdefault(r["variant"], []).append(r)
    variants: Result = {}
    for variant, rs in by_variant.items():
        good, first = [r for r in rs if ok(r)], rs[0]
        v = variants[variant] = {"label": first["label"], "partitions": first["partitions"], "runs": len(rs)}
        v |= {"ideal_s": first["partitions"] * first["seconds"] / first["concurrency"], "good": len(good)}
        v |= {"peak_rss_mib": max((r["peak_rss_mib"] for r in good), default=None)}
        v["errors"] = [error(r) for r in rs if not ok(r)]
        for key, field in (("flow", "flow_duration_s"), ("call", "run_s"), ("wall", "wall_s")):
            v[f"{key}_s"] = [r[field] for r in good]
            v[f"median_{key}_s"] = _median(v[f"{key}_s"])
        if coordination := [r["coordination_s"] for r in good if r.get("coordination_s")]:
            keys = sorted({k for c in coordination for k in c})
            v["coordination_s"] = {k: _median([c[k] for c in coordination if k in c]) for k in keys}
    bare, shared = variants.get("bare"), variants.get("shared")
    overhead = {}
    for key in ("flow", "call"):
        if bare and shared and bare[f"median_{key}_s"] and shared[f"median_{key}_s"] is not None:
            overhead[key] = (shared[f"median_{key}_s"] - bare[f"median_{key}_s"]) / bare[f"median_{key}_s"]
    flow = overhead.get("flow")
    passed = None if flow is None else flow < CAP_OVERHEAD_TARGET
    return {"variants": variants, "overhead": flow, "call_overhead": overhead.get("call"), "passed": passed}


def _orch(runs: dict[str, Result]) -> Result:
    orch: Result = {}
    for kind in ORCH_KINDS:
        if kind.startswith("loop"):
            if r := runs.get(f"orch_{kind}"):
                n = r["partitions"]
                ms = (r["flow_duration_s"] - r["first_s"]) / (n - 1) * 1000 if ok(r) and n > 1 else None
                orch[kind] = {"n": n, "flow_n_s": r.get("flow_duration_s"), "flow_1_s": r.get("first_s"), "ms": ms}
                orch[kind].update(wall_n_s=r.get("wall_s"), rss_n=r.get("peak_rss_mib"), ok=ok(r), error=error(r))
            continue
        pair = [r for r in runs.values() if r.get("group") == "orch" and r.get("kind") == kind]
        one = next((r for r in pair if r["partitions"] == 1), None)
        if not (many := next((r for r in pair if r["partitions"] > 1), None)):
            continue
        n, both = many["partitions"], ok(one) and ok(many)
        o = orch[kind] = {"n": n, "rss_n": many.get("peak_rss_mib"), "ok": both}
        for key, field in (("flow", "flow_duration_s"), ("call", "run_s"), ("wall", "wall_s")):
            o[f"{key}_n_s"], o[f"{key}_1_s"] = many.get(field), one.get(field) if one else None
        o["ms"] = (o["flow_n_s"] - o["flow_1_s"]) / (n - 1) * 1000 if both else None
        o["call_ms"] = (o["call_n_s"] - o["call_1_s"]) / (n - 1) * 1000 if both else None
        o["error"] = "" if both else f"{error(one)}; {error(many)}"
    return orch


def _speedup(runs: dict[str, Result], kind: str) -> list[Result]:
    """Per concurrency level, the median of its repeats; speedup against level 1."""
    levels: dict[int, list[Result]] = {}
    for r in (r for r in runs.values() if r.get("group") == "speedup" and r.get("kind") == kind):
        levels.setdefault(r["concurrency"], []).append(r)
    table = []
    for c, rs in sorted(levels.items()):
        good, first = [r for r in rs if ok(r)], rs[0]
        row = {"concurrency": c, "partitions": first["partitions"], "runs": len(rs), "ok": len(good) == len(rs)}
        row |= {
            "flow_all_s": [r["flow_duration_s"] for r in good],
            "error": "; ".join(error(r) for r in rs if not ok(r)),
        }
        for key, field in (("flow_s", "flow_duration_s"), ("wall_s", "wall_s"), ("cpu_pct", "call_cpu_pct")):
            row[key] = _median([r[field] for r in good if r.get(field) is not None])
        for key in ("spark_start_s", "spark_warm_s"):
            row[key] = _median([r[key] for r in good if r.get(key)])
        row["ideal_s"] = first["partitions"] * first["seconds"] / c if first.get("seconds") else None
        row["rss"] = max((r["peak_rss_mib"] for r in good), default=None)
        table.append(row)
    base = next((r["flow_s"] for r in table if r["concurrency"] == 1 and r["flow_s"]), None)
    for row in table:
        row["speedup"] = base / row["flow_s"] if base and row["flow_s"] else None
    return table


def derive(results: Result) -> Result:
    """Everything the page and the figure show, computed from the raw runs."""
    runs: dict[str, Result] = results.get("scenarios", {})
    hourly = {k: runs.get(f"hourly_{k}") for k in ("plan_empty", "run", "plan_full", "resume")}
    empty, resume = hourly["plan_empty"], hourly["resume"]
    hourly["plan_passed"] = empty["plan_s"] < PLAN_TARGET_S if empty and ok(empty) else None
    hourly["resume_passed"] = resume["wall_s"] < RESUME_TARGET_S if resume and ok(resume) else None
    cap = _cap([r for r in runs.values() if r.get("group") == "cap"])
    return {
        "cap": cap,
        "orch": _orch(runs),
        "speedup": {k: _speedup(runs, k) for k in ("io", "spark")},
        "hourly": hourly,
    }


def targets(results: Result) -> list[Result]:
    """The verdicts the page shows, also kept in results.json."""
    d = derive(results)
    cap, empty, resume = d["cap"], d["hourly"]["plan_empty"], d["hourly"]["resume"]
    names = ("cap overhead on flow time, (shared − bare) / bare", "hourly: plan, empty ledger", "hourly: resume")
    limits = (f"< {CAP_OVERHEAD_TARGET:.0%}", f"< {PLAN_TARGET_S:.0f} s", f"< {RESUME_TARGET_S:.0f} s (process wall)")
    measured = ["–" if cap["overhead"] is None else f"{cap['overhead']:+.1%}"]
    measured += [
        "–" if empty is None else f"{empty.get('plan_s', 0):.2f} s",
        "–" if resume is None else f"{resume.get('wall_s', 0):.1f} s",
    ]
    passed = (cap["passed"], d["hourly"]["plan_passed"], d["hourly"]["resume_passed"])
    return [
        {"target": n, "threshold": t, "measured": m, "result": verdict(v)}
        for n, t, m, v in zip(names, limits, measured, passed, strict=True)
    ]


def render(results: Result, path: Path) -> None:
    from bench.page_scale import render_page, render_plot

    render_plot(results, path.with_suffix(".png"))
    path.write_text(render_page(results, path.with_suffix(".png").name))


SUITE = Suite(
    script="bench/scale.py",
    out=ROOT / "bench" / "out" / "scale",
    docs=ROOT / "docs" / "scale-benchmarks.md",
    groups=("cap", "orch", "speedup", "hourly"),
    params=params,
    plan=plan,
    bronzes=bronzes,
    env=env,
    targets=targets,
    render=render,
    timeout=1800.0,
    cpu_pct=25.0,
    max_wait=(600.0, 30.0),
    retries=(1, 0),
    prefect_per_scenario=True,
)

if __name__ == "__main__":
    sys.exit(main(SUITE))
