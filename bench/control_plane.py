"""What one backfill asks of Prefect: ``.venv/bin/python -m bench.control_plane [--quick] [--only NAMES]``.

Control-plane cost is what breaks orchestrators at scale (one event or one task run per partition: issue #20),
and only a count of what actually reaches the server shows it. So each run here gets its own real
``prefect server start`` with a counting reverse proxy in front of it, and the real ``backfill run`` CLI (through
:func:`bench.harness.measure`, as ``python -m bench.child cli``) is pointed at the proxy; the SleepEngine leaves
Spark out, so everything counted is orchestration. The proxy counts HTTP requests by method and route and the
frames the events websocket carries; afterwards the server's own API says how many task runs, events and
artifacts it stored, and the ledger's Delta log how many commits it took.

One and five years of hourly partitions (``bench_noop_hour``, as :mod:`bench.scale` registers it), each with the
default chunking and with smaller chunks, and the year again made slower per partition: "grows with chunks, not
partitions" is then a fit that holds chunks, partitions and the run's duration apart (:func:`fit`: the run's timers
would otherwise pass for a cost per partition), not a reading of two runs. Writes
``bench/out/control_plane/results.json`` and section J of ``docs/benchmarks.md`` (``--quick``: a smoke run of small
ranges under ``out/quick/``, ``docs/`` untouched).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.counting_proxy import counting_proxy, prefect_server
from bench.harness import ROOT, Quiet, Result, machine_info, measure, scenario_env
from bench.render import Page, num, rows
from bench.scale import SUITE as SCALE

__all__ = ["Case", "fit", "main"]

OUT = ROOT / "bench" / "out" / "control_plane"
DOCS = ROOT / "docs" / "benchmarks.md"
KEPT = ROOT / "docs" / "bench-data" / "control-plane.json"  # bench/out/ is not tracked: the page's numbers are
HEADING = "## J. Control plane"
CHUNK_TASK = "backfill_chunk"  # tasks/chunk.py: one task run per chunk
PIPELINE = "bench_noop_hour"  # registered by prefect_backfill.testing.pipelines, which bench.scale's env loads
PER_PARTITION = 10.0  # a partitions term of this many per 1,000 partitions (one per 100) is a cost per partition
TIMER_SHARE = 10.0  # % of the largest run's count from the minutes term: a timer


@dataclass(frozen=True)
class Case:
    """One measured ``backfill run``: a range of hourly partitions, a chunk size (None: the default) and how long
    each partition sleeps (``BENCH_PARTITION_SECONDS``: a longer run with the same partitions and chunks, which
    tells what follows the run's duration, a timer, from what follows its partitions)."""

    name: str
    start: str
    end: str
    chunk_partitions: int | None = None
    partition_seconds: float = 0.0

    @property
    def cli(self) -> str:
        chunks = "" if self.chunk_partitions is None else f" --chunk-partitions {self.chunk_partitions}"
        return f"run {PIPELINE} --start {self.start} --end {self.end} --yes{chunks}"

    @property
    def label(self) -> str:
        chunks = "default chunks" if self.chunk_partitions is None else f"--chunk-partitions {self.chunk_partitions}"
        sleep = f", {self.partition_seconds * 1000:g} ms sleep per partition" if self.partition_seconds else ""
        return f"{self.start} … {self.end}, {chunks}{sleep}"


def cases(quick: bool) -> list[Case]:
    """One year (8,784 hours) and five years (43,848: bench.scale's hourly range), default and 100-hour chunks,
    and the year again with 10 ms per partition (about 45 s longer, nothing else changed)."""
    if quick:
        week, fortnight = ("2020-01-01", "2020-01-07"), ("2020-01-01", "2020-01-14")
        sizes = [Case("week", *week), Case("week_c24", *week, 24), Case("fortnight", *fortnight)]
        return [*sizes, Case("fortnight_c24", *fortnight, 24), Case("week_slow", *week, None, 0.05)]
    first, last = SCALE.params(False).hour_start, SCALE.params(False).hour_end
    year = f"{first[:4]}-12-31"
    return [
        Case("1y", first, year),
        Case("1y_c100", first, year, 100),
        Case("5y", first, last),
        Case("5y_c100", first, last, 100),
        Case("1y_slow", first, year, None, 0.01),
    ]


def server_counts(api: str, since: datetime) -> Result:
    """Flow runs, their task runs (by task), events (by name) and artifacts, as the server stored them."""
    with httpx.Client(base_url=api, timeout=120) as client:
        flow_runs = client.post("/flow_runs/filter", json={"limit": 200}).raise_for_status().json()
        tasks: Counter[str] = Counter()
        for run in flow_runs:
            offset, query = 0, {"flow_runs": {"id": {"any_": [run["id"]]}}, "limit": 200, "sort": "ID_DESC"}
            while page := client.post("/task_runs/filter", json={**query, "offset": offset}).raise_for_status().json():
                tasks.update(str(t["task_key"]).rsplit("-", 1)[0] for t in page)
                offset += len(page)
        window = {"since": since.isoformat(), "until": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
        body = {"filter": {"occurred": window}, "time_unit": "day", "time_interval": 1.0}
        counted = client.post("/events/count-by/event", json=body).raise_for_status().json()
        artifacts = client.post("/artifacts/count", json={}).raise_for_status().json()
    events = {str(e["value"]): int(e["count"]) for e in counted}
    return {
        "flow_runs": len(flow_runs),
        "task_runs": sum(tasks.values()),
        "task_runs_by_task": dict(tasks),
        "events": sum(events.values()),
        "events_by_name": dict(sorted(events.items(), key=lambda kv: -kv[1])),
        "artifacts": int(artifacts),
    }


def settled_counts(api: str, since: datetime, timeout: float = 300.0) -> Result:
    """:func:`server_counts` once two reads 5 s apart agree: the server stores events and the task runs made from
    them in background services, some seconds after the client sent them."""
    deadline, last = time.monotonic() + timeout, server_counts(api, since)
    while time.monotonic() < deadline:
        time.sleep(5)
        now = server_counts(api, since)
        if (now["events"], now["task_runs"], now["artifacts"]) == (
            last["events"],
            last["task_runs"],
            last["artifacts"],
        ):
            return now
        last = now
    return {**last, "unsettled": True}


def delta_commits(folder: Path) -> dict[str, Result]:
    """Commits of every Delta table under a run's data folder (the ledger, the run leases, the claims), by
    operation, and the rows its appends wrote (rows per commit tell a commit per chunk from one per partition)."""
    from deltalake import DeltaTable

    tables: dict[str, Result] = {}
    for log in sorted(folder.rglob("_delta_log")):
        table = DeltaTable(str(log.parent))
        history = sorted(table.history(), key=lambda commit: int(commit["version"]))
        operations = Counter(str(commit.get("operation")) for commit in history)
        rows = [
            int((c.get("operationMetrics") or {}).get("num_added_rows", 0))
            for c in history
            if c["operation"] == "WRITE"
        ]
        tables[str(log.parent.relative_to(folder))] = {
            "commits": table.version() + 1,
            "operations": dict(operations),
            "rows_appended": sum(rows),
            "rows_per_append": dict(Counter(rows).most_common()),
        }
    return tables


def run_case(case: Case, out: Path, quiet: Quiet, timeout: float) -> Result:
    """One ``backfill run`` against a fresh server behind the proxy; what it cost, counted three ways."""
    folder = out / case.name
    shutil.rmtree(folder, ignore_errors=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    since = datetime.now(UTC) - timedelta(minutes=1)
    with prefect_server(folder / "server-home", out / "logs" / f"{case.name}-server.log") as api:
        with counting_proxy(api) as (proxy_api, tally):
            env = scenario_env(folder, folder / "client-home", SCALE.env(out))
            env |= {"BACKFILL_ENGINE": "prefect_backfill.testing:SleepEngine", "PREFECT_API_URL": proxy_api}
            env |= {"BENCH_PARTITION_SECONDS": str(case.partition_seconds)}
            run = measure(case.name, ["cli", "--cli", case.cli], env, out, quiet, timeout)
            proxied = tally.snapshot()
        stored = settled_counts(api, since)
    tables = delta_commits(folder / "data")
    ledger = next((t for name, t in tables.items() if name.endswith("_backfill_progress")), {"commits": None})
    keep: tuple[str, ...] = ("run_s", "wall_s", "completed", "skipped", "failed_n", "ok", "returncode", "error", "log")
    keep += ("measured_at", "load_before", "load_after", "others_cpu_pct", "peak_rss_mib")
    return {
        "case": asdict(case),
        "label": case.label,
        "command": f"backfill {case.cli}",
        "partitions": run.get("completed") or sum(n for n, _ in run.get("chunks") or []) or None,
        "chunks": stored["task_runs_by_task"].get(CHUNK_TASK) or len(run.get("chunks") or []) or None,
        **{k: run.get(k) for k in keep},
        "proxy": proxied,
        "server": stored,
        "ledger_commits": ledger["commits"],
        "cache_records": sum(1 for f in (folder / "results").rglob("*") if f.is_file()),
        "delta_tables": tables,
    }


def _num(value: float | None) -> str:
    """A fitted coefficient as the tables show it (never "-0.0")."""
    return num(None if value is None else round(value, 1) + 0.0)


def metrics(r: Result) -> dict[str, float]:
    """The counts the table and the fit share, from one run's result."""
    proxy = r["proxy"]
    writes = sum(proxy["by_route"].get(k, 0) for k in ("POST /api/artifacts/", "PATCH /api/artifacts/{id}"))
    other = sum(t["commits"] for name, t in r["delta_tables"].items() if not name.endswith("_backfill_progress"))
    return {
        "API requests": proxy["requests"],
        "task runs": r["server"]["task_runs"],
        "events": r["server"]["events"],
        "artifact writes": writes,
        "ledger commits": r["ledger_commits"] or 0,
        "websocket messages": sum(proxy["websocket_messages"].values()),
        "log records": proxy["items"].get("POST /api/logs/", 0),
        "other Delta commits": other,
    }


TERMS = ("fixed", "per chunk", "per 1,000 partitions", "per minute")


def fit(points: Sequence[tuple[float, float, float, float]]) -> tuple[float, ...] | None:
    """Least squares ``y ≈ fixed + a × chunks + b × partitions / 1,000 + c × minutes`` over ``(chunks, partitions,
    minutes of the run, y)`` points: *b* is what 1,000 more partitions cost with the chunks and the run's duration
    held the same, *c* what the run's timers add per minute. None when the points cannot tell the terms apart
    (a point more than terms at least, so that noise in one run does not pass for a term)."""
    import numpy as np

    x = np.array([[1.0, c, p / 1000, m] for c, p, m, _ in points])
    if len(points) <= len(TERMS) or np.linalg.matrix_rank(x) < len(TERMS):
        return None
    return tuple(float(v) for v in np.linalg.lstsq(x, np.array([y for *_, y in points]), rcond=None)[0])


@dataclass(frozen=True)
class Growth:
    """One count's :func:`fit` over the runs, and the shares of the largest run's count that its partitions term
    and its minutes term explain (in %)."""

    name: str
    coef: tuple[float, ...] | None
    largest: float
    from_partitions: float | None
    from_minutes: float | None

    @classmethod
    def of(cls, name: str, runs: Sequence[Result], count: Callable[[Result], float]) -> Growth:
        """``count(run)`` fitted over ``runs``; the largest is the run with the most partitions, then chunks."""
        coef = fit([(r["chunks"], r["partitions"], r["run_s"] / 60, count(r)) for r in runs])
        big = max(runs, key=lambda r: (r["partitions"], r["chunks"]))
        value = float(count(big))
        if coef is None or not value:
            return cls(name, coef, value, None, None)
        parts, minutes = coef[2] * big["partitions"] / 1000, coef[3] * big["run_s"] / 60
        return cls(
            name, coef, value, min(100.0, max(0.0, parts) / value * 100), min(100.0, max(0.0, minutes) / value * 100)
        )

    def cells(self) -> list[str]:
        return [*(_num(v) for v in self.coef or (None,) * len(TERMS)), _num(self.from_partitions) + " %"]

    @property
    def per_k(self) -> float:
        """Its partitions term: what 1,000 more partitions cost, all else held."""
        return 0.0 if self.coef is None else self.coef[2]

    def item(self, share: float | None, term: int, unit: str) -> str:
        share_text = "" if share is None else f", {share:.0f} % of the largest run's {self.largest:,.0f}"
        return f"- {self.name}: {(self.coef or (0.0,) * len(TERMS))[term]:.1f} {unit}{share_text}"

    @property
    def timer(self) -> bool:
        """Most of what it adds to a long run comes from the run's minutes: a timer (a poll, a batch interval)."""
        return self.coef is not None and (self.from_minutes or 0.0) > TIMER_SHARE and self.coef[3] >= 0.5


def _metric(name: str) -> Callable[[Result], float]:
    return lambda r: metrics(r)[name]


def _requests(key: str) -> Callable[[Result], float]:
    return lambda r: float(r["proxy"]["by_route"].get(key, 0))


def _per_chunk(counts: dict[str, int], key: str, run: Result) -> bool:
    """Exactly one per chunk in this run."""
    return bool(counts.get(key) == run["chunks"])


def _tables(runs: Sequence[Result]) -> tuple[list[list[Any]], list[list[Any]]]:
    """The main table (the brief's columns) and what else the runs sent, a row per run."""
    main, more = [], []
    for r in runs:
        m, parts, chunks = metrics(r), r["partitions"], r["chunks"]
        requests = m["API requests"]
        cells = [r["label"], f"{parts:,}", chunks, f"{requests:,.0f}", num(requests / parts * 1000)]
        counts = [f"{m[k]:,.0f}" for k in ("task runs", "events", "artifact writes", "ledger commits")]
        main.append([*cells, num(requests / chunks), *counts, num(r.get("run_s"))])
        sent = sum(r["proxy"]["bytes_sent"].values()) / 1e6
        errors = ", ".join(f"{n} × `{k}`" for k, n in r["proxy"].get("errors", {}).items()) or "–"
        more.append([r["label"], *(f"{m[k]:,.0f}" for k in ("websocket messages", "log records")), f"{sent:.1f} MB"])
        more[-1] += [f"{m['other Delta commits']:,.0f}", f"{r.get('cache_records', 0):,}", errors]
    return main, more


def _ledger(page: Page, runs: Sequence[Result], big: Result) -> None:
    """Whether the ledger's appends after its first stay within two per chunk (a chunk's RUNNING, its COMPLETE),
    and the rows they wrote: what tells an append per chunk from one per partition."""
    ledgers = [(r, next(t for n, t in r["delta_tables"].items() if n.endswith("_backfill_progress"))) for r in runs]
    per_chunk = [(t["operations"].get("WRITE", 0) - 1) / r["chunks"] for r, t in ledgers]
    first = next(t for r, t in ledgers if r is big)
    values = {"first": max(int(n) for n in first["rows_per_append"]), "lo": min(per_chunk), "hi": max(per_chunk)}
    values |= {"smallest": min(int(n) for _, t in ledgers for n in t["rows_per_append"])}
    page.add(
        "ledger" if max(per_chunk) <= 2 else "ledger_unbounded",
        **values,
        rows=first["rows_appended"] / big["partitions"],
    )


def render(results: Result) -> str:
    """Section J, from ``results.json``: the table per run, the fit, the verdict, the busiest routes."""
    page, runs = Page("control-plane"), [r for r in results["runs"].values() if r.get("partitions") and r.get("chunks")]
    main, more = _tables(runs)
    loads = sorted(str(r.get("load_before", "?")).split()[0] for r in runs) or ["?"]
    sessions = "; ".join(f"`{s['command']}` at {s['when']}" for s in results.get("sessions", [])) or "–"
    load = f"{loads[0]}–{loads[-1]} before the runs"
    page.add("section", **{**results, "sessions": sessions}, rows=rows(main), more=rows(more), load=load)
    counts = [Growth.of(name, runs, _metric(name)) for name in metrics(runs[0])] if runs else []
    if not counts or counts[0].coef is None:
        return page.render()  # too few runs, or runs that cannot tell chunks, partitions and time apart
    big = max(runs, key=lambda r: (r["partitions"], r["chunks"]))
    page.add("fit", n=len(runs), largest=big["label"], rows=rows([g.name, *g.cells()] for g in counts))
    events = [
        n for n in big["server"]["events_by_name"] if all(_per_chunk(r["server"]["events_by_name"], n, r) for r in runs)
    ]
    calls = [k for k in big["proxy"]["by_route"] if all(_per_chunk(r["proxy"]["by_route"], k, r) for r in runs)]
    asked = ", ".join(f"`{k}`" for k in calls)
    page.add(
        "chunk",
        calls=f"one API request for each of {asked}" if asked else "no API request of its own",
        events=", ".join(f"`{n}`" for n in events),
    )
    every = sorted(set().union(*(r["proxy"]["by_route"] for r in runs)))
    routes = [Growth.of(f"`{k}`", runs, _requests(k)) for k in every]
    if grows := [
        g.item(g.from_partitions, 2, "per 1,000 partitions") for g in counts + routes if g.per_k >= PER_PARTITION
    ]:
        page.add("verdict_partitions", limit=PER_PARTITION, items="\n".join(grows))
    else:
        worst = max(counts + routes, key=lambda g: g.per_k)
        logs = next(g for g in counts if g.name == "log records")
        between = [r["run_s"] / r["proxy"]["by_route"]["POST /api/logs/"] for r in runs]
        coarse = {r["partitions"]: r for r in sorted(runs, key=lambda r: (-r["chunks"], -r["run_s"]))}
        per_k = "; ".join(f"{r['label']}: {r['proxy']['requests'] / p * 1000:.1f}" for p, r in sorted(coarse.items()))
        values = {
            "worst": worst.per_k,
            "worst_name": worst.name,
            "every": f"one per {1000 / worst.per_k:,.0f} partitions" if worst.per_k >= 0.05 else "none measurable",
            "per_k": per_k,
        }
        values |= {
            "logs": logs.coef or (0.0,) * len(TERMS),
            "lo": min(between),
            "hi": max(between),
            "limit": PER_PARTITION,
        }
        page.add("verdict_chunks", **values)
    if timers := [g.item(g.from_minutes, 3, "per minute of the run") for g in counts + routes if g.timer]:
        page.add("verdict_timers", threshold=TIMER_SHARE, items="\n".join(timers))
    _ledger(page, runs, big)
    busiest = sorted((r for r in runs if r["partitions"] == big["partitions"]), key=lambda r: r["chunks"])
    top = sorted(routes, key=lambda g: -sum(r["proxy"]["by_route"].get(g.name[1:-1], 0) for r in busiest))[:10]
    cells = [
        [g.name, *(f"{r['proxy']['by_route'].get(g.name[1:-1], 0):,}" for r in busiest), *g.cells()[1:4]] for g in top
    ]
    heads, rules = " | ".join(r["label"] for r in busiest), "---|" * len(busiest)
    page.add("routes", heads=heads, rules=rules, rows=rows(cells), partitions=big["partitions"])
    return page.render()


def write_docs(section: str, docs: Path = DOCS, heading: str = HEADING) -> None:
    """Put a section (J by default) into the benchmarks page: in place of its previous version (found by its
    ``heading``), else before ``## Method``."""
    text = docs.read_text()
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    else:
        at = text.index("## Method")
        text = text[:at] + section + "\n" + text[at:]
    docs.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.control_plane", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: a week of hours, under out/quick/")
    parser.add_argument("--only", default="", help="comma-separated runs to measure again (the rest are kept)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per `backfill run` before it is killed")
    parser.add_argument("--no-docs", action="store_true", help="results.json only, docs/ untouched")
    parser.add_argument("--rerender", action="store_true", help="measure nothing: the section again from results.json")
    args = parser.parse_args(argv)
    out = OUT / "quick" if args.quick else OUT
    results_file = out / "results.json"
    if args.rerender:
        return _publish(json.loads(results_file.read_text()), out, docs=not (args.quick or args.no_docs))
    chosen = [c for c in cases(args.quick) if not args.only or c.name in args.only.split(",")]
    previous: Result = json.loads(results_file.read_text()) if args.only and results_file.exists() else {}
    quiet = Quiet(0) if args.quick else Quiet(600.0, cpu_pct=30.0)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "-m", "bench.control_plane", *(argv or sys.argv[1:])])
    t0, started = time.perf_counter(), datetime.now(UTC)
    results: Result = {"command": command, "when": f"{started:%Y-%m-%d %H:%M UTC}", "machine": machine_info()}
    results["runs"] = dict(previous.get("runs", {}))
    session = {"command": command, "when": results["when"], "runs": [c.name for c in chosen]}
    results["sessions"] = [*previous.get("sessions", []), session]
    results["results_file"] = str(results_file.relative_to(ROOT))
    for case in chosen:
        results["runs"][case.name] = run_case(case, out, quiet, args.timeout)
        results["elapsed_min"] = (time.perf_counter() - t0) / 60
        results_file.write_text(json.dumps(results, indent=2, default=str))
        r = results["runs"][case.name]
        counts = ", ".join(f"{v:,.0f} {k}" for k, v in metrics(r).items())
        print(f"[control-plane] {case.name}: {r['partitions']} partitions, {r['chunks']} chunks, {counts}", flush=True)
    return _publish(results, out, docs=not (args.quick or args.no_docs))


def _publish(results: Result, out: Path, docs: bool) -> int:
    """Section J under ``out`` (and in docs/benchmarks.md unless ``docs`` is False); 1 if a run failed."""
    section = render(results)
    (out / "control-plane.md").write_text(section)
    if docs:
        write_docs(section)
        KEPT.write_text(json.dumps(results, indent=2, default=str))
    print(section)
    return 0 if all(r.get("ok") and r.get("returncode") == 0 for r in results["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
