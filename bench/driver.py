"""One driver for every benchmark group: which scenarios run, in which order, and where their numbers go.

A group (:class:`Suite`: ``bench/run.py``, ``bench/scale.py``) names its scenarios, its shared source tables
and its targets; the driver prepares the sources, migrates one Prefect database outside every measurement,
runs the scenarios one after another through :func:`bench.harness.measure` (never two at once: the machine
has 2 cores), keeps the numbers of scenarios not selected by ``--only`` from the previous results, and writes
``results.json`` and the group's page through :mod:`bench.render`. ``--quick`` shrinks every size and writes
under ``out/quick/``, never over the real results or ``docs/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Quiet, Result, machine_info, measure, scenario_env

__all__ = ["Bronze", "Scenario", "Suite", "main"]

NOISY_CPU_PCT = 25.0  # other processes' CPU during a measurement above which it is measured again


@dataclass(frozen=True)
class Scenario:
    """One measured process: ``python -m bench.child KIND ARGV`` with ``env`` on top of the suite's.
    Scenarios sharing a ``folder`` form a chain (plan → run → resume): only a ``fresh`` one wipes it, and
    selecting one with ``--only`` selects the whole chain."""

    name: str
    group: str
    kind: str
    label: str
    argv: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    bronze: str | None = None
    folder: str | None = None
    fresh: bool = True
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pipeline(self) -> str | None:
        """The pipeline it backfills (for ``--recheck``), from its arguments."""
        if "--pipeline" in self.argv:
            return self.argv[self.argv.index("--pipeline") + 1]
        return shlex.split(self.argv[1])[1] if self.kind == "cli" else None


@dataclass(frozen=True)
class Bronze:
    """A shared source table: generated once by ``python -m bench.child ARGV --path PATH``, reused by later
    sessions while ``wanted`` (its parameters) matches."""

    path: Path
    argv: tuple[str, ...]
    wanted: Mapping[str, Any]


@dataclass(frozen=True)
class Suite:
    """A benchmark group: how to size, plan, evaluate and render it, and its harness defaults."""

    script: str
    out: Path
    docs: Path
    groups: tuple[str, ...]
    params: Callable[[bool], Any]  # quick -> a frozen dataclass of sizes
    plan: Callable[[Any], list[Scenario]]
    bronzes: Callable[[Any, Path], dict[str, Bronze]]
    env: Callable[[Path], dict[str, str]]  # out folder -> environment every scenario gets
    targets: Callable[[Result], list[Result]]
    render: Callable[[Result, Path], None]  # results, page -> writes the page (and its figures)
    timeout: float = 3600.0
    max_load: float = float("inf")
    cpu_pct: float = 100.0
    max_wait: tuple[float, float] = (1800.0, 0.0)  # (full, --quick)
    retries: tuple[int, int] = (0, 0)  # noisy measurements measured again: (full, --quick)
    prefect_per_scenario: bool = False  # each scenario on its own copy of the migrated database


def _parse(suite: Suite, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=f"prefect-backfill benchmarks ({suite.docs.relative_to(ROOT)})")
    add = parser.add_argument
    add("--quick", action="store_true", help="smoke run: every scenario at its smallest size, under out/quick/")
    add("--only", default="", help=f"comma-separated groups ({', '.join(suite.groups)}) or scenario names")
    add("--timeout", type=float, default=suite.timeout, help="seconds per scenario before it is killed")
    add("--no-docs", action="store_true", help="write results.json only, not the page")
    add("--prepare-only", action="store_true", help="only generate the shared source tables, then stop")
    add("--recheck", action="store_true", help="measure nothing: read the scenarios' ledgers again, re-render")
    add("--max-load", type=float, default=suite.max_load, help="wait for a 1-minute load average below this")
    add("--quiet-cpu", type=float, default=suite.cpu_pct, help="wait for machine CPU use below this %%")
    add("--max-wait", type=float, default=None, help=f"seconds to wait for both (default {suite.max_wait})")
    add("--retry-noisy", type=int, default=None, help=f"measure again when others used > {NOISY_CPU_PCT:.0f}%% CPU")
    return parser.parse_args(argv)


def _select(plan: list[Scenario], only: str, groups: tuple[str, ...]) -> list[Scenario]:
    wanted = {s.strip() for s in only.split(",") if s.strip()}
    if unknown := wanted - set(groups) - {s.name for s in plan}:
        raise SystemExit(f"unknown group(s)/scenario(s) {', '.join(sorted(unknown))}: groups are {', '.join(groups)}")
    chosen = {s.name for s in plan if not wanted or s.group in wanted or s.name in wanted}
    chains = {s.folder or s.name for s in plan if s.name in chosen}
    return [s for s in plan if s.name in chosen or (s.folder or s.name) in chains]  # a chain runs whole


def _prepare(name: str, bronze: Bronze, out: Path, env: dict[str, str], timeout: float) -> Result:
    """Generate a shared source table, or reuse the one an earlier session wrote with the same parameters."""
    marker, info_file = bronze.path.parent / "params.json", bronze.path.parent / "generated.json"
    wanted = dict(bronze.wanted)
    if marker.exists() and (bronze.path / "_delta_log").is_dir() and json.loads(marker.read_text()) == wanted:
        print(f"[bench] bronze {name}: reusing {bronze.path.relative_to(ROOT)}", flush=True)
        info = json.loads(info_file.read_text()) if info_file.exists() else {}
        return {**info, "reused": True, **wanted, **_size(bronze.path)}
    shutil.rmtree(bronze.path.parent, ignore_errors=True)
    result = measure(f"generate_{name}", [*bronze.argv, "--path", str(bronze.path)], env, out, Quiet(0), timeout)
    if not result.get("ok", True) or result["returncode"] != 0:
        raise SystemExit(f"bronze {name} generation failed: {result.get('error')} (see {result['log']})")
    marker.write_text(json.dumps(wanted))
    info = {"generate_s": result.get("run_s"), "rows": result.get("rows"), "generated_at": result.get("measured_at")}
    info_file.write_text(json.dumps(info))
    return {"reused": False, **wanted, **_size(bronze.path), **info}


def _size(path: Path) -> Result:
    """Files and bytes of a source table, from its log."""
    import pyarrow as pa
    from deltalake import DeltaTable

    sizes = pa.table(DeltaTable(str(path)).get_add_actions(flatten=True)).column("size_bytes").to_pylist()
    return {"files": len(sizes), "bytes": sum(int(x) for x in sizes)}


def _recheck(suite: Suite, plan: list[Scenario], out: Path, docs: Path | None) -> int:
    """Re-derive the chunks and the recorded-version check of every completed flow scenario in results.json
    from its data folder (the ledger and the target are still there); no timing involved."""
    results_file = out / "results.json"
    results = json.loads(results_file.read_text())
    by_name = {s.name: s for s in plan}
    for name, run in results["scenarios"].items():
        scenario = by_name.get(name)
        if scenario is None or scenario.pipeline is None or not run.get("completed"):
            continue
        folder, update_file = out / (scenario.folder or name), out / "results" / f"recheck-{name}.json"
        command = [sys.executable, "-m", "bench.child", "recheck", "--pipeline", scenario.pipeline]
        env = scenario_env(folder, out / "prefect", suite.env(out))
        subprocess.run([*command, "--out", str(update_file)], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        run.update({k: v for k, v in json.loads(update_file.read_text()).items() if k not in ("ok", "in_process_s")})
        print(f"[bench] recheck {name}: {run.get('versions_wrong')} of {run.get('versions_checked')} wrong", flush=True)
    return _write(suite, results, out, docs)


def _write(suite: Suite, results: Result, out: Path, docs: Path | None) -> int:
    results["targets"] = suite.targets(results)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    if docs is not None:
        suite.render(results, docs)
        print(f"[bench] wrote {(out / 'results.json').relative_to(ROOT)} and {docs.relative_to(ROOT)}", flush=True)
    for t in results["targets"]:
        print(f"[bench] {t['result']:>4}  {t['target']}: {t['measured']}", flush=True)
    runs = results["scenarios"].values()
    return 0 if all(r.get("ok", True) and r.get("returncode") == 0 for r in runs) else 1


def main(suite: Suite, argv: list[str] | None = None) -> int:
    args = _parse(suite, argv)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), suite.script, *(argv or sys.argv[1:])])
    params = suite.params(args.quick)
    out = suite.out / "quick" if args.quick else suite.out
    docs = None if args.no_docs else out / suite.docs.name if args.quick else suite.docs
    plan = suite.plan(params)
    if args.recheck:
        return _recheck(suite, plan, out, docs)
    selected = _select(plan, args.only, suite.groups)
    previous: Result = {}
    if len(selected) < len(plan) and (out / "results.json").exists():
        previous = json.loads((out / "results.json").read_text())
    max_wait = args.max_wait if args.max_wait is not None else suite.max_wait[args.quick]
    quiet = Quiet(max_wait, args.max_load, args.quiet_cpu)
    retries = args.retry_noisy if args.retry_noisy is not None else suite.retries[args.quick]

    started_at, t0 = datetime.now(UTC), time.perf_counter()
    machine = machine_info()
    out.mkdir(parents=True, exist_ok=True)
    template, extra = out / "prefect", suite.env(out)
    bronzes: Result = dict(previous.get("bronzes", {}))
    for name, bronze in suite.bronzes(params, out).items():
        if any(s.bronze == name for s in selected):
            env = scenario_env(out / "generate", template, extra)
            bronzes[name] = _prepare(name, bronze, out, env, args.timeout)
    if args.prepare_only:
        print(json.dumps(bronzes, indent=2, default=str), flush=True)
        return 0
    # One Prefect database, created fresh and migrated once, outside every measurement.
    shutil.rmtree(template, ignore_errors=True)
    shutil.rmtree(out / "prefect-homes", ignore_errors=True)
    warmup = measure("warmup", ["warmup"], scenario_env(out / "warmup", template, extra), out, Quiet(0), args.timeout)
    if warmup.get("returncode") != 0:
        raise SystemExit(f"the Prefect warm-up failed: {warmup.get('error')} (see {warmup['log']})")

    wait = {"max_wait": max_wait, "max_load": None if math.isinf(quiet.max_load) else quiet.max_load}
    results: Result = {"command": command, "started_at": f"{started_at:%Y-%m-%d %H:%M UTC}", "machine": machine}
    results |= {"params": asdict(params), "wait": {**wait, "quiet_cpu": quiet.cpu_pct}, "bronzes": bronzes}
    results |= {"warmup": warmup, "results_file": str((out / "results.json").relative_to(ROOT))}
    runs: dict[str, Result] = dict(previous.get("scenarios", {}))

    def save() -> None:
        """results.json as it stands: a session killed halfway keeps what it measured (``--only`` adds to it)."""
        session = {"command": command, "started_at": results["started_at"], "elapsed_s": time.perf_counter() - t0}
        results.update(elapsed_s=session["elapsed_s"], scenarios={s.name: runs[s.name] for s in plan if s.name in runs})
        results["sessions"] = [*previous.get("sessions", []), {**session, "scenarios": [s.name for s in selected]}]
        (out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    for s in selected:
        attempts: list[Result] = []  # more than one while others used over NOISY_CPU_PCT of the CPU
        for _ in range(1 + (retries if s.fresh else 0)):
            if s.fresh:
                shutil.rmtree(out / (s.folder or s.name), ignore_errors=True)
            home = out / "prefect-homes" / s.name if suite.prefect_per_scenario else template
            if home != template:
                shutil.rmtree(home, ignore_errors=True)
                shutil.copytree(template, home)
            env = {**scenario_env(out / (s.folder or s.name), home, extra), **s.env}
            attempts.append(measure(s.name, [s.kind, *s.argv], env, out, quiet, args.timeout))
            if attempts[-1]["others_cpu_pct"] <= NOISY_CPU_PCT:
                break
        best = min(attempts, key=lambda r: r["others_cpu_pct"])  # the least disturbed counts
        keys = ("others_cpu_pct", "run_s", "flow_duration_s", "plan_s", "wall_s", "measured_at")
        noisy = [{k: a.get(k) for k in keys} for a in attempts if a is not best]
        runs[s.name] = {"label": s.label, "group": s.group, "kind": s.kind, "argv": list(s.argv), "env": dict(s.env)}
        runs[s.name].update({**s.meta, **best}, **({"noisy_attempts": noisy} if noisy else {}))
        save()
    machine["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    save()
    return _write(suite, results, out, docs)
