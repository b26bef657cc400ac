"""``docs/scale-benchmarks.md`` and its figure from ``bench/out/scale/results.json``: which sections of
``templates/scale-benchmarks.md`` apply (the notes are worded from the numbers, so a rerun keeps them true),
with the numbers :func:`bench.scale.derive` computes."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.harness import Result
from bench.render import Page, num, ok, rows, verdict
from bench.scale import CAP_OVERHEAD_TARGET, ORCH_KINDS, PLAN_TARGET_S, RESUME_TARGET_S, derive, error

__all__ = ["render_page", "render_plot"]

ORCH_SHORT = ("loop\n(engine)", "loop\n(+ ledger)", "flow\nthreads", "flow threads\nchunks", "flow\nDask")


def _s(value: Any, digits: int = 1) -> str:
    return num(value, f".{digits}f")


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _bold(passed: bool | None) -> str:
    return "n/a" if passed is None else f"**{verdict(passed)}**"


def _cap(page: Page, cap: Result, p: Result) -> None:
    if not (variants := cap["variants"]):
        return
    table = []
    for v in (variants[k] for k in ("bare", "shared", "per_partition") if k in variants):
        per = v["median_flow_s"] / v["partitions"] * 1000 if v["median_flow_s"] else None
        every = ", ".join(f"{x:.1f}" for x in v["flow_s"])
        table.append([v["label"], v["partitions"], f"{v['good']}/{v['runs']}", f"{_s(v['median_flow_s'])} s ({every})"])
        table[-1] += [f"{_s(v['median_call_s'])} s", f"{_s(v['median_wall_s'])} s", f"{v['ideal_s']:.1f} s"]
        table[-1] += [f"{_s(per, 0)} ms", f"{v['peak_rss_mib'] or 0:,.0f}"]
    values = {"p": p, "rows": rows(table), "limit": CAP_OVERHEAD_TARGET, "verdict": _bold(cap["passed"])}
    values["overhead"] = "–" if cap["overhead"] is None else f"{cap['overhead']:+.1%}"
    values["call"] = "" if cap["call_overhead"] is None else " " + page.text("cap_call", call=cap["call_overhead"])
    page.add("cap", **values)
    if traced := variants.get("shared", {}).get("coordination_s"):
        names = dict(line.split(": ", 1) for line in page.text("cap_step_names").splitlines())
        steps = [f"{label} {traced[k] * 1000:.0f} ms" for k, label in names.items() if k in traced]
        page.add("cap_steps", steps=", ".join(steps))
    per, bare = variants.get("per_partition"), variants.get("bare")
    if per and per["median_flow_s"] and bare and bare["median_flow_s"]:
        slow = (per["median_flow_s"] / per["partitions"]) / (bare["median_flow_s"] / bare["partitions"])
        page.add("cap_per_partition", v=per, slow=slow, ideal=per["median_flow_s"] / per["ideal_s"])
    for key in (k for k in ("bare", "shared", "per_partition") if variants.get(k, {}).get("errors")):
        page.add("failed", what=f"{key} runs", errors="; ".join(variants[key]["errors"]))


def _orch(page: Page, orch: Result, p: Result) -> None:
    table = []
    for kind, label in zip(ORCH_KINDS, page.text("orch_labels").splitlines(), strict=True):
        if not (o := orch.get(kind)):
            continue
        ms = "–" if o["ms"] is None else f"**{o['ms']:.2f}**" if o["ms"] < 1 else f"**{o['ms']:.1f}**"
        if kind.startswith("loop"):
            times = [f"{_s(o['flow_n_s'], 3)} s", f"{_s(o['flow_1_s'], 4)} s", ms, "–", f"{_s(o['wall_n_s'])} s"]
        else:
            times = [f"{_s(o['flow_n_s'], 2)} s", f"{_s(o['flow_1_s'], 2)} s", ms]
            times += [f"{_s(o['call_n_s'])} / {_s(o['call_1_s'])} s", f"{_s(o['wall_n_s'])} / {_s(o['wall_1_s'])} s"]
        table += [[label, o["n"], *times, _s(o["rss_n"], 0)]] + (
            [] if o["ok"] else [[f"↳ failed: {o['error']}"] + [""] * 7]
        )
    if table:
        page.add("orch", n=p["orch_partitions"], rows=rows(table))


def _speedup(page: Page, sp: Result, p: Result) -> None:
    io, spark = ({r["concurrency"]: r for r in sp.get(kind, [])} for kind in ("io", "spark"))
    table = []
    for c in sorted(set(io) | set(spark)):
        i, s = io.get(c) or {}, spark.get(c) or {}
        every = f" ({', '.join(f'{x:.1f}' for x in s['flow_all_s'])})" if len(s.get("flow_all_s", [])) > 1 else ""
        cpu = "–" if s.get("cpu_pct") is None else f"{s['cpu_pct']:.0f}%"
        times = [f"{_s(i.get('flow_s'))} s", f"{_s(i.get('ideal_s'))} s", _times(i.get("speedup"))]
        times += [f"{_s(s.get('flow_s'))} s{every}", _times(s.get("speedup")), cpu, _s(s.get("rss"), 0)]
        table.append([c, *times, f"{_s(s.get('spark_start_s'))} + {_s(s.get('spark_warm_s'))} s"])
    if table:
        page.add("speedup", p=p, rows=rows(table))
    for r in (r for r in [*io.values(), *spark.values()] if not r["ok"]):
        page.add("failed", what=f"at concurrency {r['concurrency']}", errors=r["error"])


def _hourly(page: Page, h: Result, p: Result) -> None:
    if not any(h[k] for k in ("plan_empty", "run", "plan_full", "resume")):
        return

    def row(label: str, key: str, target: str = "–", passed: bool | None = None) -> list[Any]:
        if not ok(r := h[key]):
            return [label, f"failed: {error(r)}", "", "", "", target, _bold(passed)]
        if "plan_s" in r:
            label += f" ({r['to_run']:,} to run, {r['skipped']:,} skipped)"
            measured = f"{r['plan_s']:.2f} s (warm repeat {r['plan_warm_s']:.2f} s; imports {r['import_s']:.1f} s)"
            call = "–"
        else:
            label += f" ({r['completed']:,} completed, {r['skipped']:,} skipped, {len(r['failed'])} failed)"
            measured, call = f"{r['flow_duration_s']:.1f} s flow time", f"{r['run_s']:.1f} s"
        rss = "–" if r.get("peak_rss_mib") is None else f"{r['peak_rss_mib']:,.0f}"
        return [label, measured, call, f"{r['wall_s']:.1f} s", rss, target, _bold(passed)]

    table = [
        row("(a) plan, empty ledger", "plan_empty", f"< {PLAN_TARGET_S:.0f} s", h["plan_passed"]),
        row(f"(b) run, chunk_partitions {p.get('hour_chunk_partitions', '?')}", "run"),
        row("(c) plan again, every partition complete", "plan_full", "none set"),
        row(
            "(d) resume: the same flow call again",
            "resume",
            f"< {RESUME_TARGET_S:.0f} s (process wall)",
            h["resume_passed"],
        ),
    ]
    count = (h["plan_empty"] or h["plan_full"] or {}).get("partitions")
    page.add("hourly", p=p, count="?" if count is None else f"{count:,}", rows=rows(table))
    if ok(run := h["run"]):
        page.add("hourly_per", ms=run["flow_duration_s"] / max(1, run["completed"]) * 1000)
    if ok(full := h["plan_full"]) and full.get("ledger_breakdown_s"):
        over = "over" if full["plan_s"] >= PLAN_TARGET_S else "within"
        page.add("hourly_ledger", b=full["ledger_breakdown_s"], plan_s=full["plan_s"], over=over)


def _notes(page: Page, d: Result, results: Result) -> None:
    """Observations worded from the numbers, so that a rerun keeps them true."""
    notes: list[str] = []
    p, cores, runs = results["params"], results["machine"]["cpus"], results.get("scenarios", {})
    bare, shared = d["cap"]["variants"].get("bare"), d["cap"]["variants"].get("shared")
    if bare and shared and bare["median_flow_s"] and shared["median_flow_s"]:
        diff = shared["median_flow_s"] - bare["median_flow_s"]
        spread = ", ".join(
            f"{k} {min(v['flow_s']):.1f}–{max(v['flow_s']):.1f} s" for k, v in (("bare", bare), ("shared", shared))
        )
        traced = shared.get("coordination_s") or {}
        steps = sum(traced.values())
        timed = (
            page.text("note_cap_steps", steps=steps, share=steps / bare["median_flow_s"])
            if traced
            else "the steps it adds were not timed"
        )
        noise = min(shared["flow_s"]) <= max(bare["flow_s"]) and traced and diff > steps
        residual = page.text("note_cap_noise", spread=spread) if noise else f"Repeats spread {spread}."
        tenfold = (steps if traced else diff) / (bare["median_flow_s"] * 10)
        notes.append(page.text("note_cap", steps=timed, diff=diff, residual=residual, tenfold=tenfold))
    thread, dask, chunked, loop = (d["orch"].get(k) or {} for k in ("thread", "dask", "chunked", "loop_ledger"))
    if thread.get("ms") is not None and dask.get("ms") is not None:
        notes.append(page.text("note_dask", dask=dask, thread=thread, times=dask["ms"] / max(thread["ms"], 1e-9)))
    if thread.get("ms") is not None and chunked.get("ms") is not None:
        notes.append(page.text("note_chunks", thread=thread["ms"], chunked=chunked["ms"]))
    if loop.get("ms") is not None and thread.get("ms") is not None:
        notes.append(page.text("note_ledger", thread=thread["ms"], ledger=loop["ms"]))
    if io := [r for r in d["speedup"].get("io", []) if r["speedup"]]:
        notes.append(page.text("note_io", p=p, last=io[-1], efficiency=io[-1]["speedup"] / io[-1]["concurrency"]))
    if spark := [r for r in d["speedup"].get("spark", []) if r["speedup"]]:
        notes.append(_spark_note(page, spark, cores, p, runs))
    run, resume = d["hourly"]["run"], d["hourly"]["resume"]
    if ok(run) and run:
        again = " " + page.text("note_hourly_resume", r=resume) if ok(resume) else ""
        ms = run["flow_duration_s"] / max(1, run["completed"]) * 1000
        notes.append(page.text("note_hourly", run=run, p=p, ms=ms, resume=again))
    loops = ("loop_engine", "loop_ledger")  # no server to start
    if flows := [
        r for r in runs.values() if r.get("run_s") and r.get("flow_duration_s") and r.get("kind") not in loops
    ]:
        notes.append(page.text("note_fixed", extra=statistics.median(r["run_s"] - r["flow_duration_s"] for r in flows)))
    noisy = sorted(((r["others_cpu_pct"], n) for n, r in runs.items() if r.get("others_cpu_pct", 0) > 20), reverse=True)
    if noisy:
        shown = ", ".join(f"{name} {pct:.0f}%" for pct, name in noisy[:8]) + (", …" if len(noisy) > 8 else "")
        notes.append(page.text("note_noise", count=len(noisy), shown=shown))
    if retried := [name for name, r in runs.items() if r.get("noisy_attempts")]:
        notes.append(page.text("note_retried", names=", ".join(retried)))
    if notes:
        page.add("notes").raw("\n".join(notes))


def _spark_note(page: Page, spark: list[Result], cores: int, p: Result, runs: dict[str, Result]) -> str:
    """What the Spark levels say about concurrency on this many cores."""
    at_cores, top = next((r for r in spark if r["concurrency"] == cores), None), spark[-1]
    levels = ", ".join(f"{r['speedup']:.2f}× at {r['concurrency']}" for r in spark if r["concurrency"] > 1)
    cpu = [f"{r['cpu_pct']:.0f}% at {r['concurrency']}" for r in spark if r["cpu_pct"] is not None]
    beyond = at_cores and top["concurrency"] > cores and top["speedup"] > at_cores["speedup"] * 1.15
    reading = page.text(f"note_spark_{'beyond' if beyond else 'flat'}", cores=cores, rows=p["bronze_rows_per_day"])
    serial = [r for r in runs.values() if r.get("kind") == "spark" and r.get("concurrency") == 1]
    times = [t for t in (serial[0].get("partition_work_s") or [] if serial else []) if t]
    warmup = (
        page.text("note_spark_warmup", first=times[0], last=statistics.median(times[-4:])) if len(times) > 3 else ""
    )
    cpu_text = f"; CPU use during the call {', '.join(cpu)}" if cpu else ""
    return page.text("note_spark", cores=cores, levels=levels, cpu=cpu_text, reading=reading, warmup=" " + warmup)


def render_page(results: Result, plot_name: str = "scale-benchmarks.png") -> str:
    d, m, p = derive(results), results["machine"], results["params"]
    page = Page("scale-benchmarks")
    sessions = results.get("sessions") or [{"started_at": results["started_at"], "elapsed_s": results["elapsed_s"]}]
    first, last = sessions[0]["started_at"], sessions[-1]["started_at"]
    minutes = sum(x["elapsed_s"] for x in sessions) / 60
    when = page.text(
        "when_one" if len(sessions) == 1 else "when_many", count=len(sessions), first=first, last=last, minutes=minutes
    )
    values = {"m": m, "load_after": m.get("load_after", "?"), "when": when, "plot": plot_name}
    values["wait"] = {"max_wait": 0, "quiet_cpu": 0, **results.get("wait", {})}
    values["results_file"] = results.get("results_file", "bench/out/scale/results.json")
    page.add("intro", quick=" " + page.text("quick") if p.get("quick") else "", **values)
    _cap(page, d["cap"], p)
    _orch(page, d["orch"], p)
    _speedup(page, d["speedup"], p)
    _hourly(page, d["hourly"], p)
    _notes(page, d, results)
    return page.render()


def render_plot(results: Result, path: Path) -> None:
    """One PNG, three panels: orchestration ms/partition, speedup vs concurrency, the cap's variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, cpus = derive(results), results["machine"]["cpus"]
    fig, (orch, speedup, cap) = plt.subplots(1, 3, figsize=(16, 4.8))

    short = dict(zip(ORCH_KINDS, ORCH_SHORT, strict=True))
    kinds = [k for k in ORCH_KINDS if k in d["orch"] and d["orch"][k]["ms"] is not None]
    values = [max(d["orch"][k]["ms"], 1e-4) for k in kinds]
    _bars(orch, [short[k] for k in kinds], values, ["#999", "#777", "#1f77b4", "#2ca02c", "#d62728"], "{:.3g}")
    orch.set_yscale("log")
    orch.set(ylabel="ms per partition (log)", title="Orchestration cost per no-op partition")
    orch.tick_params(axis="x", labelsize=8)

    top = 1
    for kind, label, style in (("io", "I/O-bound (sleep)", "o-"), ("spark", "Spark + Delta", "s-")):
        if points := [r for r in d["speedup"].get(kind, []) if r["speedup"]]:
            speedup.plot([r["concurrency"] for r in points], [r["speedup"] for r in points], style, label=label)
            top = max(top, *(r["concurrency"] for r in points))
    xs = [c for c in (1, 2, 4, 8, 16) if c <= top]
    speedup.plot(xs, xs, "k--", linewidth=1, label="ideal")
    speedup.axvline(cpus, color="#bbb", linestyle=":", label=f"{cpus} cores")
    speedup.set_xscale("log", base=2)
    speedup.set_xticks(xs, [str(x) for x in xs])
    speedup.set(xlabel="max_concurrency", ylabel="speedup vs max_concurrency 1", title="Speedup vs concurrency")
    speedup.legend(fontsize=8)

    variants, labels = d["cap"]["variants"], {"bare": "bare pool", "shared": "shared cap"}
    labels["per_partition"] = "limit per\npartition"
    names = [(k, label) for k, label in labels.items() if k in variants and variants[k]["median_flow_s"]]
    per_partition_ms = [variants[k]["median_flow_s"] / variants[k]["partitions"] * 1000 for k, _ in names]
    _bars(cap, [label for _, label in names], per_partition_ms, ["#1f77b4", "#2ca02c", "#d62728"], "{:.0f}")
    if names:
        v = variants[names[0][0]]
        ideal = v["ideal_s"] / v["partitions"] * 1000
        cap.axhline(ideal, color="k", linestyle="--", linewidth=1, label=f"ideal ({ideal:.0f} ms)")
        cap.legend(fontsize=8)
    cap.set(ylabel="flow time per partition, ms (median)", title="Shared cap vs bare pool vs per-partition limit")

    quick = " (quick smoke run)" if results["params"].get("quick") else ""
    fig.suptitle(f"prefect-backfill scale benchmarks — shared {cpus}-core machine{quick}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bars(ax: Any, labels: list[str], values: list[float], colors: list[str], label: str) -> None:
    for bar, value in zip(ax.bar(labels, values, color=colors[: len(values)]), values, strict=True):
        ax.annotate(
            label.format(value), (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8
        )
