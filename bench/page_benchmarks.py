"""``docs/benchmarks.md`` from ``bench/out/results.json``: which sections of ``templates/benchmarks.md``
apply, with which numbers. The words are in the template; the verdicts are :func:`bench.run.evaluate`'s."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.harness import MIB, Result
from bench.render import Page, num, ok, rows
from bench.run import chunk_summary, end_of, partitions

__all__ = ["fit_fixed_cost", "render_page"]

NOTES = Path(__file__).resolve().parent / "notes.md"  # the reading of the numbers, written by hand


def _load(run: Result) -> str:
    before, after = (str(run.get(k, "?")).split()[0] for k in ("load_before", "load_after"))
    return f"{before} → {after}"


def _status(run: Result, error: int = 0) -> str:
    if ok(run):
        return "ok"
    return "FAILED" + (f" ({str(run.get('error') or '')[:error]})" if error else "")


def _flow_row(name: str, run: Result) -> list[Any]:
    breakdown = run.get("peak_breakdown_mib", {})
    parts, done = partitions(run), run.get("completed")
    per = run["run_s"] / parts if parts and done else None
    shown = "–" if done is None else f"{done} run" + (f", {run['skipped']} skipped" if run.get("skipped") else "")
    target = "–" if run.get("rows_target") is None else f"{run['rows_target']:,}"
    cells = [f"`{name}`", run.get("label", ""), num(run.get("run_s")), num(run.get("flow_duration_s"), ".2f")]
    cells += [num(run.get("wall_s")), num(run.get("spark_start_s")), shown, chunk_summary(run), num(per, ".3f")]
    at_peak = " / ".join(num(breakdown.get(k), ".0f") for k in ("python", "jvm", "other"))
    return [*cells, num(run.get("peak_rss_mib"), ".0f"), at_peak, target, _load(run), _status(run)]


def fit_fixed_cost(runs: dict[str, Result]) -> dict[str, float] | None:
    """Least squares over every chunk of the budget runs at max_concurrency 2: seconds = fixed + per_mb × MB."""
    points: list[tuple[float, float]] = []
    for name, run in runs.items():
        if name.startswith("budget_") and ok(run) and run.get("source_bytes") and not run.get("concurrency"):
            mb_per_partition = run["source_bytes"] / MIB / max(1, int(run.get("days") or 1))
            points += [(int(c[0]) * mb_per_partition, float(c[1])) for c in run.get("chunks") or []]
    if len(points) < 3 or len({round(x, 3) for x, _ in points}) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in points), statistics.fmean(y for _, y in points)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return {"fixed_s": my - slope * mx, "per_mb_s": slope, "points": len(points)}


def _budget(page: Page, runs: dict[str, Result], results: Result) -> None:
    budget = sorted(
        (r for n, r in runs.items() if n.startswith("budget_")), key=lambda r: float(r.get("chunk_mb") or 0)
    )
    if not budget:
        return
    fit, table = fit_fixed_cost(runs), []
    for run in budget:
        chunks = run.get("chunks") or []
        mb_day = (run.get("source_bytes") or 0) / MIB / max(1, int(run.get("days") or 1))
        med_mb = statistics.median(int(c[0]) * mb_day for c in chunks) if chunks else None
        med_s = statistics.median(float(c[1]) for c in chunks) if chunks else None
        total_mb = sum(int(c[0]) * mb_day for c in chunks)
        per_gib = sum(float(c[1]) for c in chunks) / total_mb * 1024 if total_mb else None
        share = fit["fixed_s"] / med_s if fit and med_s else None
        mb = f"{float(run.get('chunk_mb') or 0):g}" + (" (max_concurrency 1)" if run.get("concurrency") == 1 else "")
        cells = [mb, chunk_summary(run), num(med_mb), num(med_s, ".2f"), num(per_gib)]
        cells += [
            "–" if share is None else f"{share * 100:.0f} %",
            num(run.get("run_s")),
            num(run.get("flow_duration_s")),
        ]
        jvm = num(run.get("peak_breakdown_mib", {}).get("jvm"), ".0f")
        table.append([*cells, num(run.get("peak_rss_mib"), ".0f"), jvm, _load(run), _status(run, error=120)])
    wide = results.get("bronzes", {}).get("wide", {})
    page.add(
        "budget", p=results["params"], mib=wide.get("bytes", 0) / MIB, files=wide.get("files", "?"), rows=rows(table)
    )
    if fit and fit["per_mb_s"] > 0:
        per_mb, fixed = fit["per_mb_s"], fit["fixed_s"]
        page.add("budget_fit", **fit, per_mb_ms=per_mb * 1000, equal_mb=fixed / per_mb, tenth_mb=9 * fixed / per_mb)
    elif fit:
        page.add("budget_fit_flat", **fit)


def _profile(page: Page, run: Result | None) -> None:
    if not run or not ok(run) or not run.get("sizes"):
        return
    sizes = run["sizes"]
    keys = list(sizes)
    total1 = sizes[keys[0]]["median_s"].get("total", 0.0)
    steps = [n for n in sizes[keys[0]]["median_s"] if n != "total"] + ["total"]
    table = [
        [f"**{step}**" if step == "total" else step]
        + [f"{sizes[k]['median_s'].get(step, 0.0) * 1000:.0f}" for k in keys]
        + [f"{(sizes[keys[0]]['median_s'].get(step, 0.0) / total1 * 100 if total1 else 0.0):.0f} %"]
        for step in steps
    ]
    heads = " | ".join(f"{k}-day chunk (ms)" for k in keys)
    page.add("profile", repeats=sizes[keys[0]]["repeats"], heads=heads, rules="---|" * len(keys), rows=rows(table))
    items = []
    for size, per_chunk in (run.get("spark_jobs") or {}).items():
        if not per_chunk:
            continue
        counts = sorted(len(j) for j in per_chunk)
        typical = [j for j in per_chunk if len(j) == statistics.median_low(counts)]
        shown = []
        for i, (name, _) in enumerate(typical[0]):
            ms = [j[i][1] for j in typical if j[i][1] is not None]
            shown.append(f"`{name}` {statistics.median(ms):.0f}" if ms else f"`{name}`")
        jobs = f"{statistics.median_low(counts)} jobs ({counts[0]}–{counts[-1]})"
        items.append(f"- {size}-day chunks, {jobs}: " + "; ".join(shown))
    if items:
        page.add("profile_jobs", items="\n".join(items))
    if alternatives := run.get("alternatives_s"):
        page.add("profile_alternatives", rows=rows([k, f"{v * 1000:.1f}"] for k, v in alternatives.items()))
    if crc := run.get("crc_threshold_raised"):
        millis, last = (
            {k: v * 1000 for k, v in crc["median_s"].items()},
            [r["total"] for r in sizes[keys[0]]["runs"]][-5:],
        )
        counts = sorted(len(j) for j in crc.get("spark_jobs") or [])
        snapshots = [sum("Compute snapshot" in job[0] for job in j) for j in crc.get("spark_jobs") or []]
        jobs = page.text("profile_crc_jobs", n=statistics.median(counts)) if counts else ""
        jobs += page.text("profile_crc_snapshots", n=statistics.median(snapshots)) if snapshots else ""
        last_text = " " + page.text("profile_crc_last", ms=statistics.median(last) * 1000) if last else ""
        write = millis.get("replaceWhere write + commit", 0)
        page.add("profile_crc", crc=crc, total=millis.get("total", 0), write=write, jobs=jobs, last=last_text)
    if whole := run.get("whole_range_s"):
        timings = "; ".join(f"{k} **{v:.2f}**" for k, v in whole.items() if k != "days")
        ensure = run.get("ensure_target_s")
        ensure_text = "" if ensure is None else page.text("profile_ensure", seconds=ensure)
        page.add("profile_whole", days=whole["days"], timings=timings, ensure=ensure_text)


def _hourly(page: Page, runs: dict[str, Result], results: Result) -> None:
    steps = [n for n in ("hourly_plan", "hourly_run", "hourly_plan_done", "hourly_resume") if n in runs]
    if not steps:
        return
    table = []
    for name in steps:
        run = runs[name]
        if "to_run" in run:
            parts = f"{run['to_run']} to run, {run['skipped']} skipped"
        elif run.get("completed") is not None:
            parts = f"{run['completed']} run, {run.get('skipped')} skipped, {run.get('failed_n', 0)} failed"
        else:
            parts = "–"
        error = "" if ok(run) else f": {str(run.get('error'))[:200]}"
        times = [num(run.get("run_s")), num(run.get("flow_duration_s"))]
        table.append([f"`{name}` {run.get('label', '')}", *times, parts, chunk_summary(run)])
        table[-1] += [num(run.get("peak_rss_mib"), ".0f"), _load(run), _status(run) + error]
    bronze = {"start": "?", "end": "?", "rows": "?", "files": "?", **results.get("bronzes", {}).get("hourly", {})}
    page.add("hourly", b=bronze, mib=bronze.get("bytes", 0) / MIB, rows=rows(table))


def render_page(results: Result) -> str:
    """The whole docs/benchmarks.md."""
    params, runs = results["params"], results["scenarios"]
    bronzes = results.get("bronzes", {})
    sessions = "; ".join(
        f"`{s['command']}` at {s['started_at']} ({s['elapsed_s'] / 60:.0f} min)" for s in results.get("sessions", [])
    )
    results_file = results.get("results_file", "bench/out/results.json")
    page = Page("benchmarks").add("intro", results_file=results_file, logs=str(Path(results_file).parent / "logs"))
    if params.get("quick"):
        page.add("quick")
    wait = {"max_wait": 1800, "max_load": 1.5, **results.get("wait", {})}
    targets = rows([t["target"], t["threshold"], t["measured"], f"**{t['result']}**"] for t in results["targets"])
    page.add("method", machine=results["machine"], wait=wait, sessions=sessions or "–", targets=targets)
    demo = bronzes.get("demo", {})
    end = params.get("end") or end_of(params["start"], params["days"])
    mib, files = demo.get("bytes", 0) / MIB, demo.get("files", "?")
    page.add("demo", p=params, end=end, rows=params["days"] * params["rows_per_day"], mib=mib, files=files)
    flows = [n for n, r in runs.items() if r.get("group") == "demo" and r.get("kind") != "wrong"]
    flows += [n for n, r in runs.items() if r.get("kind") == "wrong"]
    page.add("flows", rows=rows(_flow_row(n, runs[n]) for n in flows))
    if big := {n: r for n, r in runs.items() if r.get("group") == "big"}:
        mb_day = bronzes.get("wide", {}).get("bytes", 0) / MIB / max(1, int(params.get("wide_days") or 1))
        page.add("big", p=params, mb_day=mb_day, over=mb_day / params["big_chunk_mb"])
        page.add("flows", rows=rows(_flow_row(n, r) for n, r in big.items()))
    page.add("rss")
    _hourly(page, runs, results)
    _profile(page, runs.get("profile"))
    _budget(page, runs, results)
    if ok(trust := runs.get("trust_cost")) and trust and trust.get("median_s"):
        bare = trust["median_s"]["bare"]
        table = [[name, f"{s:.2f}", f"{s / bare:.2f}×"] for name, s in trust["median_s"].items()]
        page.add("trust", t=trust, rows=rows(table))
    if checked := {n: r for n, r in runs.items() if r.get("versions_checked")}:
        examples = {n: "; ".join(r.get("versions_wrong_examples") or []) or "–" for n, r in checked.items()}
        table = [[f"`{n}`", r["versions_checked"], r.get("versions_wrong", 0), examples[n]] for n, r in checked.items()]
        page.add("versions", rows=rows(table))
    if errors := [f"- `{n}`: {str(r['error']).splitlines()[0][:400]}" for n, r in runs.items() if r.get("error")]:
        page.add("errors", items="\n".join(errors))
    if NOTES.exists():
        page.raw(NOTES.read_text().strip())
    return page.render()
