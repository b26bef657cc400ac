"""The benchmark against the seed: ``.venv/bin/python bench/run.py [--quick] [--only GROUPS_OR_NAMES]``
(``make bench``; options in :mod:`bench.driver`). Writes ``bench/out/results.json`` and ``docs/benchmarks.md``
with PASS/FAIL against the acceptance targets.

Groups (``--only demo,big,budget,hourly,profile`` or scenario names; the others' numbers are kept):

- ``demo``: 182 days × 2,000 rows: the seed port, the package at default settings, its resume, the package
  with one partition per job, the CLI, the read-all/overwrite-all job, a 30-day run;
- ``big``: days of ~4 MB of source against a 1 MB budget: chunked vs one partition per job;
- ``budget``: 1 GB of wide source backfilled with byte budgets of 1 … 512 MB;
- ``hourly``: one year of real hourly partitions (8,784) planned, run and resumed with the real CLI;
- ``profile``: the fixed cost of one small chunk, step by step;
- ``trust``: what checks and the before/after diff add to one chunk.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (bench/run.py): make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.driver import Bronze, Scenario, Suite, main
from bench.harness import ROOT, Result
from bench.render import Page, ok, verdict

__all__ = ["SUITE", "Params", "end_of", "evaluate"]

START = "2024-01-01"  # the demo's first day: the seed's story starts there


@dataclass(frozen=True)
class Params:
    """Sizes of every scenario; ``--quick`` shrinks them all (a smoke run of the harness, not a measurement)."""

    days: int = 182
    rows_per_day: int = 2_000
    small_days: int = 30
    wide_days: int = 256
    wide_rows_per_day: int = 4_000
    payload_bytes: int = 1_024
    big_days: int = 30
    big_chunk_mb: float = 1.0
    big_repeats: int = 2  # extra runs of big_chunked and big_p1: they run the very same chunks
    budgets: tuple[float, ...] = (1, 16, 64, 256, 512)
    hourly_start: str = "2024-01-01"
    hourly_end: str = "2024-12-31"
    profile_repeats: int = 20
    trust_days: int = 30
    trust_rows_per_day: int = 20_000
    trust_repeats: int = 5
    quick: bool = False
    start: str = START


QUICK: dict[str, Any] = {"days": 5, "rows_per_day": 200, "small_days": 2, "wide_days": 8, "wide_rows_per_day": 600}
QUICK |= {"big_days": 4, "big_chunk_mb": 0.1, "big_repeats": 1, "budgets": (0.1, 1), "hourly_end": "2024-01-02"}
QUICK |= {"profile_repeats": 4, "trust_days": 2, "trust_rows_per_day": 200, "trust_repeats": 1, "quick": True}


def params(quick: bool) -> Params:
    return Params(**QUICK) if quick else Params()


def end_of(start: str, days: int) -> str:
    """Inclusive end date of ``days`` daily partitions from ``start``."""
    return (date.fromisoformat(start) + timedelta(days=days - 1)).isoformat()


def _flow(end: str, concurrency: int = 2, pipeline: str = "bench_orders", **chunks: float) -> tuple[str, ...]:
    argv = ("--pipeline", pipeline, "--start", START, "--end", end, "--concurrency", str(concurrency))
    return argv + tuple(x for k, v in chunks.items() for x in (f"--chunk-{k}", f"{v:g}"))


def plan(p: Params) -> list[Scenario]:
    """All scenarios, in run order: a resume right after the run it resumes, the seed port last (~15 min)."""
    end, small_end = end_of(START, p.days), end_of(START, p.small_days)
    days, one_job, cli = (
        {"days": p.days},
        ("--start", START, "--end", end),
        f"run bench_orders --start {START} --end {end}",
    )
    hours = f"bench_events_hourly --start {p.hourly_start}T00 --end {p.hourly_end}T23 --yes"

    def demo(name: str, kind: str, label: str, argv: tuple[str, ...], **more: Any) -> Scenario:
        return Scenario(name, "demo", kind, label, argv, bronze="demo", **{"meta": days, **more})

    def hourly(name: str, label: str, command: str) -> Scenario:
        argv = ("--cli", f"{command} {hours}" + (" --json" if command == "plan" else ""))
        return Scenario(
            name, "hourly", "cli", label, argv, bronze="hourly", folder="hourly", fresh=name == "hourly_plan"
        )

    def wide(name: str, label: str, days: int, mb: float, **more: Any) -> Scenario:
        argv = _flow(end_of(START, days), more.pop("concurrency", 2), "bench_wide", **{"mb": mb, **more})
        meta = {"days": days, "chunk_mb": mb} | ({"concurrency": 1} if "_c1" in name else {})
        return Scenario(name, name.split("_")[0], "package", label, argv, bronze="wide", meta=meta)

    big, mb, small = (
        f"wide days, chunk_mb={p.big_chunk_mb:g}",
        p.big_chunk_mb,
        f"package, defaults, {p.small_days} days",
    )
    profile = ("--start", START, "--repeats", str(p.profile_repeats))
    out = [
        demo("package", "package", "package, defaults (max_concurrency 2, chunking on)", _flow(end)),
        demo("resume", "resume", "resume of `package` (new process)", _flow(end), folder="package", fresh=False),
        demo("package_p1", "package", "package, chunk_partitions=1 (one partition per job)", _flow(end, partitions=1)),
        demo("package_cli", "cli", "`backfill run` (the CLI, embedded server), defaults", ("--cli", cli)),
        demo("wrong", "wrong", "single job: read all, overwrite all", one_job),
        demo("package_small", "package", small, _flow(small_end), meta={"days": p.small_days}),
        hourly("hourly_plan", "`backfill plan` (empty ledger)", "plan"),
        hourly("hourly_run", "`backfill run` (defaults)", "run"),
        hourly("hourly_plan_done", "`backfill plan` (all complete)", "plan"),
        hourly("hourly_resume", "`backfill run` again (resume)", "run"),
        Scenario("profile", "profile", "profile", "one small chunk, step by step (no Prefect)", profile, bronze="demo"),
        wide("big_chunked", f"{big} (chunking on)", p.big_days, mb),
        wide("big_p1", f"{big}, chunk_partitions=1", p.big_days, mb, partitions=1),
        wide("big_default", "wide days, defaults (chunk_mb=256)", p.big_days, 256),
    ]
    # big_chunked and big_p1 run the very same chunks (every day is over the budget), so one run each says
    # more about the machine than about chunking: more of each, taking turns.
    for i in range(2, 2 + p.big_repeats):
        out.append(wide(f"big_chunked_r{i}", f"as big_chunked (repeat {i})", p.big_days, mb))
        out.append(wide(f"big_p1_r{i}", f"as big_p1 (repeat {i})", p.big_days, mb, partitions=1))
    label, top = f"wide, {p.wide_days} days, chunk_mb=", max(p.budgets)
    out += [wide(f"budget_{mb:g}", f"{label}{mb:g}", p.wide_days, mb) for mb in p.budgets]
    out.append(wide(f"budget_{top:g}_c1", f"{label}{top:g}, max_concurrency 1", p.wide_days, top, concurrency=1))
    trust = ("--start", START, "--end", end_of(START, p.trust_days), "--rows-per-day", str(p.trust_rows_per_day))
    label = f"checks and the diff, {p.trust_days} days × {p.trust_rows_per_day:,} rows in one chunk"
    out.append(Scenario("trust_cost", "trust", "trust", label, (*trust, "--repeats", str(p.trust_repeats))))
    return [*out, demo("seed", "seed", "seed BackfillController port (sequential, MERGE/UPDATE)", one_job)]


def bronzes(p: Params, out: Path) -> dict[str, Bronze]:
    """The shared sources: the demo's orders, the wide orders (~1 KB payload a row), hourly events."""
    demo = {"start": START, "days": p.days, "rows_per_day": p.rows_per_day}
    wide = {"start": START, "days": p.wide_days, "rows_per_day": p.wide_rows_per_day, "payload": p.payload_bytes}
    hourly = {"start": p.hourly_start, "end": p.hourly_end}

    def argv(kind: str, wanted: Result, *more: str) -> tuple[str, ...]:
        end = wanted.get("end") or end_of(START, wanted["days"])
        return (kind, "--start", wanted["start"], "--end", end, *more)

    rows, payload = ("--rows-per-day", str(p.rows_per_day)), ("--payload-bytes", str(p.payload_bytes))
    return {
        "demo": Bronze(out / "bronze" / "orders", argv("generate", demo, *rows), demo),
        "wide": Bronze(
            out / "bronze_wide" / "orders",
            argv("generate_wide", wide, "--rows-per-day", str(p.wide_rows_per_day), *payload),
            wide,
        ),
        "hourly": Bronze(out / "bronze_hourly" / "events", argv("generate_hourly", hourly), hourly),
    }


def env(out: Path) -> dict[str, str]:
    """Every scenario reads the same sources (``bench/pipelines.py``) and writes its own target and ledger."""
    return {
        "BACKFILL_PIPELINE_MODULES": "bench.pipelines",
        "BENCH_SOURCE_PATH": str(out / "bronze" / "orders"),
        "BENCH_WIDE_SOURCE_PATH": str(out / "bronze_wide" / "orders"),
        "BENCH_HOURLY_SOURCE_PATH": str(out / "bronze_hourly" / "events"),
    }


LIMITS = {
    "VS_SINGLE_JOB": 1.5,  # package (defaults) time ≤ 1.5 × the single read-all/overwrite-all job
    "VS_SEED": 10.0,  # package (defaults) ≥ 10× faster than the seed port
    "RESUME_S": 3.0,  # flow time of a resume of the demo range, with no JVM
    "RSS_GROWTH": 1.25,  # peak RSS, 182-day run vs 30-day run
    "BIG": 1.0,  # chunked time per partition ≤ this × one-partition-per-job's, for partitions over the budget
    "HOURLY_RUN_MIN": 10.0,
    "HOURLY_RESUME_S": 30.0,
}


def partitions(run: Result) -> int:
    return int(run.get("completed") or 0) + int(run.get("skipped") or 0) if run.get("kind") != "wrong" else 0


def chunk_summary(run: Result) -> str:
    """ "N × a–b": the number of chunks and their sizes in partitions."""
    if not (chunks := run.get("chunks")):
        return "–"
    sizes = sorted(int(c[0]) for c in chunks)
    return f"{len(chunks)} × {sizes[0]}" + ("" if sizes[0] == sizes[-1] else f"–{sizes[-1]}")


def _target(key: str, passed: bool | None = None, **values: Any) -> Result:
    """A verdict worded by the template's section ``t_<key>``: name, threshold, missing, measured."""
    name, threshold, missing, measured = Page("benchmarks").sections[f"t_{key}"].strip().split("\n")
    text = measured.format(**LIMITS, **values) if values else missing
    return {"target": name, "threshold": threshold.format(**LIMITS), "measured": text, "result": verdict(passed)}


def evaluate(results: Result) -> list[Result]:
    """PASS/FAIL against each acceptance target; ``n/a`` when a scenario it needs did not run or failed."""
    r = {name: run for name, run in results["scenarios"].items() if ok(run)}
    keys = ("vs_job", "cli_vs_job", "vs_seed", "resume", "big", "rss", "hourly_run", "hourly_resume")
    out = [_big(r) if key == "big" else _target(key) for key in keys]  # n/a until measured, below
    if {"package", "wrong"} <= r.keys():
        ratio, flow = r["package"]["run_s"] / r["wrong"]["run_s"], r["package"].get("flow_duration_s", 0)
        flow_ratio = flow / r["wrong"]["run_s"]
        out[0] = _target("vs_job", ratio <= LIMITS["VS_SINGLE_JOB"], r=r, ratio=ratio, flow=flow, flow_ratio=flow_ratio)
    # What a user waits for: the whole `backfill run` process against the whole process of the single job.
    if {"package_cli", "wrong"} <= r.keys() and r["package_cli"].get("wall_s") and r["wrong"].get("wall_s"):
        ratio = r["package_cli"]["wall_s"] / r["wrong"]["wall_s"]
        out[1] = _target("cli_vs_job", ratio <= LIMITS["VS_SINGLE_JOB"], r=r, ratio=ratio)
    if {"package", "seed"} <= r.keys():
        speedup = r["seed"]["run_s"] / r["package"]["run_s"]
        out[2] = _target("vs_seed", speedup >= LIMITS["VS_SEED"], r=r, speedup=speedup)
    if (resume := r.get("resume")) and resume.get("flow_duration_s") is not None:
        days, flow = int(resume.get("days") or 0), float(resume["flow_duration_s"])
        jvm = bool(resume.get("jvm_started") or resume.get("jvm_seen"))
        skipped = resume.get("skipped") == days and not resume.get("completed") and not resume.get("cached")
        passed = flow <= LIMITS["RESUME_S"] and not jvm and skipped
        out[3] = _target("resume", passed, r=r, flow=flow, days=days, jvm="yes" if jvm else "no")
    if {"package", "package_small"} <= r.keys():
        ratio = r["package"]["peak_rss_mib"] / r["package_small"]["peak_rss_mib"]
        out[5] = _target("rss", ratio <= LIMITS["RSS_GROWTH"], r=r, ratio=ratio)
    if (run := r.get("hourly_run")) and run.get("completed"):
        passed = run["run_s"] <= LIMITS["HOURLY_RUN_MIN"] * 60
        out[6] = _target("hourly_run", passed, r=r, chunks=len(run.get("chunks") or []))
    if "hourly_resume" in r:
        out[7] = _target("hourly_resume", r["hourly_resume"]["run_s"] <= LIMITS["HOURLY_RESUME_S"], r=r)
    return out


def _big(good: dict[str, Result]) -> Result:
    """Time per partition, chunked vs one partition per job, when every partition is over the budget."""
    first_a, first_b = good.get("big_chunked"), good.get("big_p1")
    if first_a is None or first_b is None:
        return _target("big")

    def per_partition(prefix: str) -> list[float]:
        return [
            r["run_s"] / max(1, partitions(r)) for n, r in good.items() if n == prefix or n.startswith(f"{prefix}_r")
        ]

    a, b = per_partition("big_chunked"), per_partition("big_p1")
    first = (first_a["run_s"] / max(1, partitions(first_a))) / (first_b["run_s"] / max(1, partitions(first_b)))
    ratio = statistics.median(a) / statistics.median(b)
    values = {"first": first, "n_a": len(a), "n_b": len(b), "ratio": ratio, "a": statistics.median(a)}
    values |= {
        "b": statistics.median(b),
        "all_a": ", ".join(f"{x:.2f}" for x in a),
        "all_b": ", ".join(f"{x:.2f}" for x in b),
    }
    return _target(
        "big", ratio <= LIMITS["BIG"], chunks_a=chunk_summary(first_a), chunks_b=chunk_summary(first_b), **values
    )


def render(results: Result, path: Path) -> None:
    from bench.page_benchmarks import render_page

    path.write_text(render_page(results))


SUITE = Suite(
    script="bench/run.py",
    out=ROOT / "bench" / "out",
    docs=ROOT / "docs" / "benchmarks.md",
    groups=("demo", "big", "budget", "hourly", "profile", "trust"),
    params=params,
    plan=plan,
    bronzes=bronzes,
    env=env,
    targets=evaluate,
    render=render,
    max_load=1.5,
)

if __name__ == "__main__":
    sys.exit(main(SUITE))
