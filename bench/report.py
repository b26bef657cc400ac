"""Targets and the Markdown report: pure functions of ``results.json``, so the report can be re-rendered
(``python -m bench.report bench/out/results.json``) without re-running anything."""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

__all__ = ["evaluate", "fit_fixed_cost", "render_markdown", "stats"]

VS_SINGLE_JOB_TARGET = 1.5  # package (defaults) time ≤ 1.5 × the single read-all/overwrite-all job
VS_SEED_TARGET = 10.0  # package (defaults) ≥ 10× faster than the seed port
RESUME_TARGET_S = 3.0  # flow time of a resume of the demo range, with no JVM
RSS_GROWTH_TARGET = 1.25  # peak RSS, 182-day run vs 30-day run
BIG_TARGET = 1.0  # chunked time per partition ≤ this × one-partition-per-job's, for partitions over the budget
HOURLY_RUN_TARGET_S = 600.0
HOURLY_RESUME_TARGET_S = 30.0
MIB = 1024 * 1024
NOTES = Path(__file__).resolve().parent / "notes.md"


def stats(values: list[float]) -> dict[str, float] | None:
    """Median, p95 (nearest rank), mean and max."""
    if not values:
        return None
    ordered = sorted(values)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "n": len(ordered),
        "median": statistics.median(ordered),
        "p95": p95,
        "mean": statistics.fmean(ordered),
        "max": ordered[-1],
    }


def _target(name: str, threshold: str, measured: str, passed: bool | None) -> dict[str, Any]:
    verdict = "n/a" if passed is None else ("PASS" if passed else "FAIL")
    return {"target": name, "threshold": threshold, "measured": measured, "result": verdict}


def _ok(run: dict[str, Any] | None) -> bool:
    return bool(run) and bool(run.get("ok", True)) and run.get("returncode") == 0  # type: ignore[union-attr]


def _succeeded(runs: dict[str, dict[str, Any]], name: str) -> dict[str, Any] | None:
    """A scenario's results only if it ran to the end without a failed partition: targets need clean runs."""
    run = runs.get(name)
    return run if run is not None and _ok(run) else None


def _load(run: dict[str, Any]) -> str:
    before = str(run.get("load_before", "?")).split()[0]
    after = str(run.get("load_after", "?")).split()[0]
    return f"{before} → {after}"


def _partitions(run: dict[str, Any]) -> int:
    return int(run.get("completed") or 0) + int(run.get("skipped") or 0) if run.get("kind") != "wrong" else 0


def _vs_single_job(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name, threshold = (
        "demo range: package (defaults) vs the single read-all/overwrite-all job",
        (f"≤ {VS_SINGLE_JOB_TARGET}× the job's time"),
    )
    package, wrong = _succeeded(runs, "package"), _succeeded(runs, "wrong")
    if package is None or wrong is None:
        return _target(name, threshold, "package or wrong missing/failed", None)
    ratio = package["run_s"] / wrong["run_s"]
    measured = (
        f"{ratio:.2f}× (whole `backfill(...)` call {package['run_s']:.1f} s, embedded server start and planning "
        f"included, vs the job {wrong['run_s']:.1f} s; flow's own duration_s {package.get('flow_duration_s', 0):.1f} s "
        f"= {package.get('flow_duration_s', 0) / wrong['run_s']:.2f}×)"
    )
    return _target(name, threshold, measured, ratio <= VS_SINGLE_JOB_TARGET)


def _cli_vs_single_job(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What a user waits for: the whole `backfill run` process (interpreter, embedded server, Spark start,
    plan, run) against the whole process of the single job (interpreter, Spark start, the job)."""
    name, threshold = (
        "demo range, whole commands: `backfill run` vs the single job's process",
        f"≤ {VS_SINGLE_JOB_TARGET}× the job's process",
    )
    cli, wrong = _succeeded(runs, "package_cli"), _succeeded(runs, "wrong")
    if cli is None or wrong is None or not cli.get("wall_s") or not wrong.get("wall_s"):
        return _target(name, threshold, "package_cli or wrong missing/failed", None)
    ratio = cli["wall_s"] / wrong["wall_s"]
    measured = f"{ratio:.2f}× (`backfill run` {cli['wall_s']:.1f} s vs the job's process {wrong['wall_s']:.1f} s)"
    return _target(name, threshold, measured, ratio <= VS_SINGLE_JOB_TARGET)


def _vs_seed(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name, threshold = "demo range: package (defaults) vs the seed port", f"≥ {VS_SEED_TARGET:.0f}× faster"
    package, seed = _succeeded(runs, "package"), _succeeded(runs, "seed")
    if package is None or seed is None:
        return _target(name, threshold, "package or seed missing/failed", None)
    speedup = seed["run_s"] / package["run_s"]
    measured = f"{speedup:.1f}× (seed {seed['run_s']:.1f} s vs package {package['run_s']:.1f} s)"
    return _target(name, threshold, measured, speedup >= VS_SEED_TARGET)


def _resume(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name, threshold = "demo range: resume of the completed range", f"≤ {RESUME_TARGET_S:.0f} s flow time, no Spark"
    run = _succeeded(runs, "resume")
    if run is None or run.get("flow_duration_s") is None:
        return _target(name, threshold, "resume missing/failed", None)
    days = int(run.get("days") or 0)
    flow_s = float(run["flow_duration_s"])
    jvm = bool(run.get("jvm_started") or run.get("jvm_seen"))
    all_skipped = run.get("skipped") == days and not run.get("completed") and not run.get("cached")
    measured = (
        f"duration_s {flow_s:.2f} s (whole call {run['run_s']:.1f} s); {run.get('skipped')} of {days} skipped; "
        f"JVM started: {'yes' if jvm else 'no'}"
    )
    return _target(name, threshold, measured, flow_s <= RESUME_TARGET_S and not jvm and all_skipped)


def _big(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    name = "big partitions (each day over the budget): chunked vs chunk_partitions=1, time per partition"
    threshold = "no slower (≤ 1.00×)"
    first_a, first_b = _succeeded(runs, "big_chunked"), _succeeded(runs, "big_p1")
    if first_a is None or first_b is None:
        return _target(name, threshold, "big_chunked or big_p1 missing/failed", None)

    def per_partition(prefix: str) -> list[float]:
        return [
            r["run_s"] / max(1, _partitions(r))
            for n, r in runs.items()
            if (n == prefix or n.startswith(f"{prefix}_r")) and _ok(r)
        ]

    a, b = per_partition("big_chunked"), per_partition("big_p1")
    first = (first_a["run_s"] / max(1, _partitions(first_a))) / (first_b["run_s"] / max(1, _partitions(first_b)))
    ratio = statistics.median(a) / statistics.median(b)
    measured = (
        f"first run each: {first:.3f}×; median of {len(a)} vs {len(b)} runs: **{ratio:.3f}×** "
        f"({statistics.median(a):.2f} vs {statistics.median(b):.2f} s per partition, whole call; all runs: "
        f"{', '.join(f'{x:.2f}' for x in a)} vs {', '.join(f'{x:.2f}' for x in b)}); chunks "
        f"{_chunk_summary(first_a)} vs {_chunk_summary(first_b)}"
    )
    return _target(name, threshold, measured, ratio <= BIG_TARGET)


def _rss(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    big, small = _succeeded(runs, "package"), _succeeded(runs, "package_small")
    name = "peak RSS, demo range vs a 30-day run (defaults)"
    threshold = f"≤ {RSS_GROWTH_TARGET:.2f}×"
    if big is None or small is None:
        return _target(name, threshold, "package or package_small missing/failed", None)
    ratio = big["peak_rss_mib"] / small["peak_rss_mib"]
    measured = (
        f"{ratio:.3f}× ({big.get('days')} days {big['peak_rss_mib']:.0f} MiB vs {small.get('days')} days "
        f"{small['peak_rss_mib']:.0f} MiB)"
    )
    return _target(name, threshold, measured, ratio <= RSS_GROWTH_TARGET)


def _hourly(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    run, resume = runs.get("hourly_run"), runs.get("hourly_resume")
    name = "hourly, one year (8,784 partitions), real Spark + Delta: `backfill run`"
    threshold = f"≤ {HOURLY_RUN_TARGET_S / 60:.0f} min (CLI wall)"
    if run is None or not _ok(run) or not run.get("completed"):
        out.append(_target(name, threshold, "hourly_run missing/failed", None))
    else:
        measured = (
            f"{run['run_s']:.1f} s CLI wall ({run['completed']} partitions, {len(run.get('chunks') or [])} chunks)"
        )
        out.append(_target(name, threshold, measured, run["run_s"] <= HOURLY_RUN_TARGET_S))
    name = "hourly: resume (`backfill run` again, everything complete)"
    threshold = f"≤ {HOURLY_RESUME_TARGET_S:.0f} s wall"
    if resume is None or not _ok(resume):
        out.append(_target(name, threshold, "hourly_resume missing/failed", None))
    else:
        measured = f"{resume['run_s']:.1f} s CLI wall ({resume.get('skipped')} skipped, {resume.get('completed')} run)"
        out.append(_target(name, threshold, measured, resume["run_s"] <= HOURLY_RESUME_TARGET_S))
    return out


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/FAIL against each acceptance target; ``n/a`` when a scenario it needs did not run or failed."""
    runs: dict[str, dict[str, Any]] = results["scenarios"]
    return [
        _vs_single_job(runs),
        _cli_vs_single_job(runs),
        _vs_seed(runs),
        _resume(runs),
        _big(runs),
        _rss(runs),
        *_hourly(runs),
    ]


def _fmt(value: Any, spec: str = ".1f", scale: float = 1.0) -> str:
    return "–" if value is None else format(float(value) * scale, spec)


def _chunk_summary(run: dict[str, Any]) -> str:
    chunks = run.get("chunks") or []
    if not chunks:
        return "–"
    sizes = sorted(int(c[0]) for c in chunks)
    spread = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]}–{sizes[-1]}"
    return f"{len(chunks)} × {spread}"


def _status(run: dict[str, Any]) -> str:
    return "ok" if _ok(run) else "FAILED"


def _flow_row(name: str, run: dict[str, Any]) -> str:
    breakdown = run.get("peak_breakdown_mib", {})
    parts = _partitions(run)
    per = run["run_s"] / parts if parts and run.get("completed") else None
    done = run.get("completed")
    shown = "–" if done is None else f"{done} run" + (f", {run['skipped']} skipped" if run.get("skipped") else "")
    cells = [
        f"`{name}`",
        run.get("label", ""),
        _fmt(run.get("run_s")),
        _fmt(run.get("flow_duration_s"), ".2f"),
        _fmt(run.get("wall_s")),
        _fmt(run.get("spark_start_s")),
        shown,
        _chunk_summary(run),
        _fmt(per, ".3f"),
        _fmt(run.get("peak_rss_mib"), ".0f"),
        " / ".join(_fmt(breakdown.get(k), ".0f") for k in ("python", "jvm", "other")),
        "–" if run.get("rows_target") is None else f"{run['rows_target']:,}",
        _load(run),
        _status(run),
    ]
    return "| " + " | ".join(cells) + " |"


FLOW_HEADER = [
    "| scenario | what | backfill (s) | flow duration_s (s) | process wall (s) | Spark start (s) | partitions "
    "| chunks × partitions | backfill s / partition | peak RSS (MiB) | python / JVM / other at peak (MiB) "
    "| rows in target | load 1-min before → after | status |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def fit_fixed_cost(runs: dict[str, dict[str, Any]]) -> dict[str, float] | None:
    """Least squares over every chunk of the budget runs: seconds = fixed + per_mb × source MB."""
    points: list[tuple[float, float]] = []
    for name, run in runs.items():
        if not name.startswith("budget_") or not _ok(run) or not run.get("source_bytes") or run.get("concurrency"):
            continue
        mb_per_partition = run["source_bytes"] / MIB / max(1, int(run.get("days") or 1))
        points += [(int(c[0]) * mb_per_partition, float(c[1])) for c in run.get("chunks") or []]
    if len(points) < 3 or len({round(x, 3) for x, _ in points}) < 2:
        return None
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    return {"fixed_s": my - slope * mx, "per_mb_s": slope, "points": len(points)}


def _budget_section(runs: dict[str, dict[str, Any]], results: dict[str, Any]) -> list[str]:
    budget = {n: r for n, r in runs.items() if n.startswith("budget_")}
    if not budget:
        return []
    wide = results.get("bronzes", {}).get("wide", {})
    p = results["params"]
    lines = [
        "## F. Byte budget (`chunk_mb`)",
        "",
        f"The wide bronze: {p['wide_days']} days × {p['wide_rows_per_day']:,} rows with a "
        f"{p['payload_bytes']:,}-byte incompressible payload per row ({wide.get('bytes', 0) / MIB:,.0f} MiB of source "
        f"in {wide.get('files', '?')} files, `bench/datagen.py`), transform keeps every column; the same range "
        "backfilled by the flow at max_concurrency 2 "
        "with each `chunk_mb`, each in a fresh process and a fresh target. A chunk's time is its engine time "
        "(`duration_s` × partitions in the ledger: read, count job, write, commit, history read); *fixed share* is the "
        "fitted fixed cost over the median chunk's time.",
        "",
        "| chunk_mb | chunks × days | median chunk (MiB of source) | median chunk time (s) | s per GiB (engine) "
        "| fixed share | backfill (s) | flow duration_s (s) | peak RSS (MiB) | JVM at peak (MiB) "
        "| load before → after | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fit = fit_fixed_cost(runs)
    for _, run in sorted(budget.items(), key=lambda kv: float(kv[1].get("chunk_mb") or 0)):
        chunks = run.get("chunks") or []
        mb_day = (run.get("source_bytes") or 0) / MIB / max(1, int(run.get("days") or 1))
        med_mb = statistics.median(int(c[0]) * mb_day for c in chunks) if chunks else None
        med_s = statistics.median(float(c[1]) for c in chunks) if chunks else None
        total_engine = sum(float(c[1]) for c in chunks)
        total_mb = sum(int(c[0]) * mb_day for c in chunks)
        per_gib = total_engine / total_mb * 1024 if total_mb else None
        share = fit["fixed_s"] / med_s if fit and med_s else None
        cells = [
            f"{float(run.get('chunk_mb') or 0):g}" + (" (max_concurrency 1)" if run.get("concurrency") == 1 else ""),
            _chunk_summary(run),
            _fmt(med_mb, ".1f"),
            _fmt(med_s, ".2f"),
            _fmt(per_gib, ".1f"),
            "–" if share is None else f"{share * 100:.0f} %",
            _fmt(run.get("run_s")),
            _fmt(run.get("flow_duration_s")),
            _fmt(run.get("peak_rss_mib"), ".0f"),
            _fmt(run.get("peak_breakdown_mib", {}).get("jvm"), ".0f"),
            _load(run),
            _status(run) + ("" if _ok(run) else f" ({str(run.get('error') or '')[:120]})"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if fit:
        lines += [
            "",
            f"Fitted over all {fit['points']} chunks of the max_concurrency 2 runs: **chunk time ≈ "
            f"{fit['fixed_s']:.2f} s + "
            f"{fit['per_mb_s'] * 1000:.1f} ms per MiB of source** (so the fixed cost equals the work of "
            f"~{fit['fixed_s'] / fit['per_mb_s']:.0f} MiB; it is under 10 % of a chunk from "
            f"~{9 * fit['fixed_s'] / fit['per_mb_s']:.0f} MiB on)."
            if fit["per_mb_s"] > 0
            else f"Fitted over {fit['points']} chunks: fixed {fit['fixed_s']:.2f} s, no measurable per-MiB slope.",
        ]
    return [*lines, ""]


def _profile_section(runs: dict[str, dict[str, Any]]) -> list[str]:
    run = runs.get("profile")
    if not run or not _ok(run) or not run.get("sizes"):
        return []
    sizes = run["sizes"]
    keys = list(sizes)
    names = list(sizes[keys[0]]["median_s"])
    lines = [
        "## E. The fixed cost of one small chunk, step by step",
        "",
        "`bench/profile_chunk.py`: a chunk task's body (`ChunkExecutor.run` → `SparkDeltaEngine.process_chunk`,"
        " ledger events, cache records), without Prefect, on the demo bronze (2,000 rows a day), warm JVM "
        f"({sizes[keys[0]]['repeats']} chunks of 1 day after 5 warm-up chunks, then chunks of 7 and 30 days), with "
        "timers wrapped around each step in that process only. Medians in ms; a step's median need not add up to the "
        "total's.",
        "",
        "| step | " + " | ".join(f"{k}-day chunk (ms)" for k in keys) + " | share of the 1-day chunk |",
        "|---|" + "---|" * len(keys) + "---|",
    ]
    total1 = sizes[keys[0]]["median_s"].get("total", 0.0)
    for name in [n for n in names if n != "total"] + ["total"]:
        cells = [f"{sizes[k]['median_s'].get(name, 0.0) * 1000:.0f}" for k in keys]
        share = sizes[keys[0]]["median_s"].get(name, 0.0) / total1 * 100 if total1 else 0.0
        label = f"**{name}**" if name == "total" else name
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {share:.0f} % |")
    jobs = run.get("spark_jobs") or {}
    if jobs:
        lines += [
            "",
            "Spark jobs per chunk, from the driver's status store (description, or call site; median ms over the "
            "chunks of that size, in order):",
            "",
        ]
        for size, per_chunk in jobs.items():
            if not per_chunk:
                continue
            counts = sorted(len(j) for j in per_chunk)
            typical = [j for j in per_chunk if len(j) == statistics.median_low(counts)]
            shown = []
            for i, (name, _) in enumerate(typical[0]):
                ms = [j[i][1] for j in typical if j[i][1] is not None]
                shown.append(f"`{name}` {statistics.median(ms):.0f}" if ms else f"`{name}`")
            lines.append(
                f"- {size}-day chunks, {statistics.median_low(counts)} jobs ({counts[0]}–{counts[-1]}): "
                + "; ".join(shown)
            )
    alternatives = run.get("alternatives_s") or {}
    if alternatives:
        lines += ["", "Measured alone on the same tables (median of 7, ms):", "", "| what | ms |", "|---|---|"]
        lines += [f"| {k} | {v * 1000:.1f} |" for k, v in alternatives.items()]
    crc = run.get("crc_threshold_raised")
    if crc:
        raised = crc["median_s"]
        last = [r["total"] for r in sizes[keys[0]].get("runs", [])][-5:]
        counts = sorted(len(j) for j in crc.get("spark_jobs") or [])
        snapshot_jobs = [sum("Compute snapshot" in job[0] for job in j) for j in crc.get("spark_jobs") or []]
        lines += [
            "",
            f"An experiment: Delta keeps a table's file list in its `.crc` only below the internal conf "
            f"`allFilesInCrc.thresholdNumFiles` (50 files); the same 1-day chunks with `{crc['conf']}` (session "
            f"conf, after one priming chunk), median of {crc['repeats']}: total "
            f"{raised.get('total', 0) * 1000:.0f} ms, "
            f"replaceWhere write + commit {raised.get('replaceWhere write + commit', 0) * 1000:.0f} ms, "
            + (f"{statistics.median(counts):g} Spark jobs per chunk, " if counts else "")
            + (f"{statistics.median(snapshot_jobs):g} of them `Compute snapshot`" if snapshot_jobs else "")
            + (
                f" (the last 5 of the 1-day chunks measured above, earlier on the same JVM: median "
                f"{statistics.median(last) * 1000:.0f} ms)."
                if last
                else "."
            ),
        ]
    whole = run.get("whole_range_s")
    if whole:
        lines += [
            "",
            f"Warm JVM, the whole {whole['days']}-day range in one process (median of 3, s): "
            + "; ".join(f"{k} **{v:.2f}**" for k, v in whole.items() if k != "days")
            + (
                f". Creating the empty target on the fresh JVM (`ensure_target`, the flow's first step) took "
                f"{run['ensure_target_s']:.2f} s."
                if run.get("ensure_target_s") is not None
                else "."
            ),
        ]
    return [*lines, ""]


def _hourly_section(runs: dict[str, dict[str, Any]], results: dict[str, Any]) -> list[str]:
    steps = [n for n in ("hourly_plan", "hourly_run", "hourly_plan_done", "hourly_resume") if n in runs]
    if not steps:
        return []
    hourly = results.get("bronzes", {}).get("hourly", {})
    lines = [
        "## D. One year of real hourly partitions (Spark + Delta, the real CLI)",
        "",
        f"Bronze `bench_events_hourly`: every hour of {hourly.get('start', '?')} … {hourly.get('end', '?')}, "
        f"5–20 rows per hour ({hourly.get('rows', '?')} rows, {hourly.get('files', '?')} files, "
        f"{hourly.get('bytes', 0) / MIB:.1f} MiB), "
        "partitioned by `event_hour` (a timestamp). Each step is the installed `backfill` command run as a child "
        "process with the default settings (max_concurrency 2, chunk_mb 256, chunk_partitions 400) and `--yes` "
        "(8,784 partitions is over the safety cap of 400); *CLI wall* is that child from start to exit (interpreter, "
        "imports, planning, embedded Prefect server, flow, JVM start and stop). One data folder for the four steps.",
        "",
        "| step | CLI wall (s) | flow duration_s (s) | partitions | chunks × partitions | peak RSS (MiB) "
        "| load before → after | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in steps:
        run = runs[name]
        if "to_run" in run:
            parts = f"{run['to_run']} to run, {run['skipped']} skipped"
        elif run.get("completed") is not None:
            parts = f"{run['completed']} run, {run.get('skipped')} skipped, {run.get('failed_n', 0)} failed"
        else:
            parts = "–"
        cells = [
            f"`{name}` {run.get('label', '')}",
            _fmt(run.get("run_s")),
            _fmt(run.get("flow_duration_s")),
            parts,
            _chunk_summary(run),
            _fmt(run.get("peak_rss_mib"), ".0f"),
            _load(run),
            _status(run) + ("" if _ok(run) else f": {str(run.get('error'))[:200]}"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


DESCRIPTIONS = {
    "seed": "a port of the seed's `BackfillController` (`bench/seed.py`): sequential; per day a Spark SQL "
    "`MERGE INTO` of a RUNNING row into a Delta progress table, read the source partition, transform, "
    "`replaceWhere` overwrite, `UPDATE` to COMPLETE/FAILED",
    "package": 'this package at its defaults: `flows.backfill.backfill(pipeline="bench_orders", start, end)` '
    "(max_concurrency 2, chunk_mb 256, chunk_partitions 400)",
    "resume": "the same flow call again over `package`'s completed range, in a new process; the harness does not "
    "start Spark",
    "package_p1": "the package with `chunk_partitions=1`: one partition per Spark job and commit (the old execution "
    "model)",
    "wrong": 'the seed\'s "wrong approach": read the whole source, transform, overwrite the whole target in one job',
    "package_cli": "the real `backfill run bench_orders --start … --end …` as a user types it: one process with "
    "the embedded Prefect server; compared by process wall time with the single job's process",
    "package_small": "the package at its defaults over the first 30 days: the baseline of the RSS target",
}

INTRO = """\
# Benchmarks

Written by `bench/run.py` (do not edit by hand: the next run rewrites this file). Every scenario runs in
its own process with a fresh JVM (the RSS of its whole process tree sampled every 0.2 s by `bench/monitor.py`),
one after another, with the package's Spark configuration (`prefect_backfill.engine.spark.get_spark`: local[*],
driver memory 2g). Raw numbers: `bench/out/results.json`; logs: `bench/out/logs/`.

**Execution model measured here**: consecutive partitions packed into chunks by source bytes (from the
source's Delta log), one count pass and one Delta `replaceWhere` commit per chunk (9 Spark jobs in all, see
section E); ledger events, rows and cache records per partition. Defaults: `max_concurrency` 2, `chunk_mb` 256,
`chunk_partitions` 400; a run also never makes a chunk larger than 1/`max_concurrency` of its work, so the
182-day demo runs as 2 chunks of 91 days.
"""

METHOD = """\
## Method

- **Machine**: {machine}. The machine is **shared**: other engineers' jobs (CI runs of the test suite, crash
  matrices) run on the same 2 cores. Before each scenario the harness waited (up to {max_wait:.0f} s) for the
  1-minute load average to fall below {max_load}, and it records the load average before and after each
  scenario (the *load* columns): a load near 1 before a scenario is mostly the previous scenario's own JVM
  winding down; above 2, another job was competing for the cores and the time is inflated.
- **Columns**: *backfill* is the timed call (the seed's `BackfillController.run`, the whole `backfill(...)` flow
  call including the embedded Prefect server's start (~4–5 s here) and planning, the single job, or the CLI child
  process); *flow duration_s* is what the package's summary reports (flow function entry to summary); *process wall*
  is the scenario's process from start to exit (interpreter, imports, JVM start and stop); *Spark start* is
  `get_spark()` done up front by every scenario that needs Spark (the JVM start is then not in the backfill time;
  the CLI scenarios start it inside); *peak RSS* is the highest sum of RSS over the process tree, split at that
  instant into the Python driver / the JVM / other children (the Prefect server; for the CLI scenarios also the
  `backfill` process itself); *chunks × partitions* comes from the ledger (a chunk's partitions share their
  attempt's start and end).
- **One run each** (as asked), except the big-partition pair (three runs each, section B): differences of ±10 %
  between two runs of the same thing are run-to-run noise on this machine.
- Sessions: {sessions}.
"""


def render_markdown(results: dict[str, Any]) -> str:
    """The whole docs/benchmarks.md."""
    params, machine = results["params"], results["machine"]
    runs: dict[str, dict[str, Any]] = results["scenarios"]
    bronzes = results.get("bronzes", {})
    demo = bronzes.get("demo", {})
    machine_text = (
        f"{machine['cpus']} cores ({machine['cpu_model']}), {machine['ram_gib']:.0f} GiB RAM; Python "
        f"{machine['python']}, pyspark {machine['pyspark']}, prefect {machine['prefect']}, JAVA_HOME "
        f"`{machine['java_home']}`"
    )
    sessions = "; ".join(
        f"`{s['command']}` at {s['started_at']} ({s['elapsed_s'] / 60:.0f} min)" for s in results.get("sessions", [])
    )
    lines = [INTRO]
    if params.get("quick"):
        lines += [
            "> **Smoke run (`--quick`)**: tiny data, only to check the harness works; the verdicts below say nothing.",
            "",
        ]
    lines += [
        METHOD.format(
            machine=machine_text,
            max_wait=results.get("wait", {}).get("max_wait", 1800),
            max_load=results.get("wait", {}).get("max_load", 1.5),
            sessions=sessions or "–",
        ),
        "## Targets",
        "",
        "| target | threshold | measured | result |",
        "|---|---|---|---|",
    ]
    lines += [f"| {t['target']} | {t['threshold']} | {t['measured']} | **{t['result']}** |" for t in results["targets"]]
    lines += [
        "",
        f"## A. Demo range: {params['days']} days × {params['rows_per_day']:,} rows (`make bench` data)",
        "",
        f"Bronze: `prefect_backfill.demo.generate_orders`, {params['start']} … {params['end']}, "
        f"{params['days'] * params['rows_per_day']:,} rows, {demo.get('bytes', 0) / MIB:.1f} MiB in "
        f"{demo.get('files', '?')} files.",
        "",
        "| scenario | what |",
        "|---|---|",
    ]
    lines += [f"| `{n}` | {text} |" for n, text in DESCRIPTIONS.items()]
    lines += ["", *FLOW_HEADER]
    lines += [_flow_row(n, r) for n, r in runs.items() if r.get("group") == "demo" and r.get("kind") != "wrong"]
    lines += [_flow_row(n, r) for n, r in runs.items() if r.get("kind") == "wrong"]
    big = {n: r for n, r in runs.items() if r.get("group") == "big"}
    if big:
        wide = bronzes.get("wide", {})
        mb_day = wide.get("bytes", 0) / MIB / max(1, int(params.get("wide_days") or 1))
        lines += [
            "",
            "## B. Big partitions: each day over the byte budget",
            "",
            f"Writing gigabyte days is not possible here, so the budget is made small instead: the first "
            f"{params['big_days']} days of the wide bronze (~{mb_day:.1f} MiB of source per day, section F) with "
            f"`chunk_mb={params['big_chunk_mb']:g}`, i.e. every day is {mb_day / params['big_chunk_mb']:.1f}× over the "
            "budget and must run alone, whether chunking is on (default `chunk_partitions` 400) or off "
            "(`chunk_partitions=1`); `big_default` shows the same days with the default 256 MB budget.",
            "",
            *FLOW_HEADER,
            *(_flow_row(n, r) for n, r in big.items()),
        ]
    lines += ["", "## C. Peak RSS: see the targets (`package` vs `package_small`, both at defaults) and table A.", ""]
    lines += _hourly_section(runs, results)
    lines += _profile_section(runs)
    lines += _budget_section(runs, results)
    checked = {n: r for n, r in runs.items() if r.get("versions_checked")}
    if checked:
        lines += [
            "## Check: the commit version recorded per partition",
            "",
            "After each run (outside its timing) the harness compares every COMPLETE partition's `table_version` in "
            "the ledger with the version of the commit that wrote it, read from the target's own commit files "
            "(`_delta_log/<version>.json`, whose `userMetadata` names the run and the chunk's partitions).",
            "",
            "| scenario | partitions checked | wrong version in the ledger | examples |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{n}` | {r['versions_checked']} | {r.get('versions_wrong', 0)} | "
            f"{'; '.join(r.get('versions_wrong_examples') or []) or '–'} |"
            for n, r in checked.items()
        ]
        lines += [""]
    errors = [(n, r["error"]) for n, r in runs.items() if r.get("error")]
    if errors:
        lines += ["## Errors", ""]
        lines += [f"- `{n}`: {str(e).splitlines()[0][:400]}" for n, e in errors]
        lines += [""]
    if NOTES.exists():  # the reading of these numbers, written by hand (bench/notes.md)
        lines += [NOTES.read_text().strip(), ""]
    return "\n".join(lines)


if __name__ == "__main__":  # re-render the report from a results file
    data = json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out/results.json").read_text())
    data["targets"] = evaluate(data)
    print(render_markdown(data))
