"""One scenario process measured from outside: its wall time, the peak RSS of its process tree, the CPU it
and everything else used meanwhile, and the load around it.

Each scenario is its own process (``python -m bench.child KIND …``: a fresh interpreter and JVM), so peak RSS
compares across scenarios; sampling from here keeps the measurement out of the measured process. The tree is
the scenario plus its descendants (the JVM, Prefect's temporary server, Dask workers). A child whose virtual
size equals its parent's is a fork image not yet exec'd (the JVM forks Hadoop's shell helpers while it writes:
a naive sum once counted it twice, +1.4 GiB) and counts once, as its parent; pages shared between distinct
processes still count more than once, alike for every scenario. The machine is shared (2 cores): before each
scenario :class:`Quiet` waits for the load and the CPU use to fall, and each result records what others used
while it ran (``others_cpu_pct``: the machine's busy CPU minus this tree's, approximate).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "JAVA_HOME",
    "MIB",
    "ROOT",
    "Quiet",
    "Result",
    "TreeMonitor",
    "Watched",
    "machine_info",
    "measure",
    "scenario_env",
    "watch",
]

ROOT = Path(__file__).resolve().parents[1]
JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"  # Spark 4.2 runs on 17 or 21: pick 17, not the first `java`
MIB = 1024 * 1024
Result = dict[str, Any]


class TreeMonitor(threading.Thread):
    """Sample RSS and CPU seconds of ``pid`` and all its descendants every ``interval`` until :meth:`stop`.
    The peak is the highest sum over the tree, split at that instant by kind (python: the scenario, jvm,
    other); CPU is kept per process as last seen, because a JVM or server that its parent never reaps would
    be missing from ``getrusage(RUSAGE_CHILDREN)``."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name=f"rss-{pid}", daemon=True)
        self.pid, self.interval, self.total_mib, self.jvm_seen = pid, interval, 0.0, False
        self.at_peak: tuple[dict[str, float], list[str]] = ({}, [])
        self.kind_peak: dict[str, float] = {}
        self.cpu: dict[tuple[int, float], float] = {}
        self.samples = self.max_processes = self.fork_images_skipped = 0
        self._stop_event = threading.Event()

    @property
    def tree_cpu_s(self) -> float:
        return sum(self.cpu.values())

    def sample(self) -> None:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        seen: list[tuple[int, int, str, int, int]] = []  # pid, ppid, name, rss, vms
        for proc in procs:
            with contextlib.suppress(psutil.Error), proc.oneshot():  # it may exit between listing and reading
                mem, cpu = proc.memory_info(), proc.cpu_times()
                self.cpu[(proc.pid, proc.create_time())] = cpu.user + cpu.system
                seen.append((proc.pid, proc.ppid(), proc.name(), mem.rss, mem.vms))
        if not seen:
            return
        vms_of = {pid: vms for pid, _, _, _, vms in seen}
        by_kind: dict[str, float] = {}
        counted: list[str] = []
        for pid, ppid, name, rss, vms in seen:
            if pid != self.pid and vms_of.get(ppid) == vms:
                self.fork_images_skipped += 1  # a fork/vfork image of its parent: already counted
                continue
            kind = "python" if pid == self.pid else "jvm" if "java" in name.lower() else "other"
            by_kind[kind] = by_kind.get(kind, 0.0) + rss / MIB
            counted.append(f"{name}[{pid}] {rss / MIB:.0f} MiB")
        self.samples, self.max_processes = self.samples + 1, max(self.max_processes, len(seen))
        self.jvm_seen = self.jvm_seen or "jvm" in by_kind
        self.kind_peak |= {kind: max(self.kind_peak.get(kind, 0.0), mib) for kind, mib in by_kind.items()}
        if (total := sum(by_kind.values())) > self.total_mib:
            self.total_mib, self.at_peak = total, (by_kind, counted)

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            self.sample()
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> Result:
        """Stop sampling; the peaks, and whether a JVM ever appeared (the resume check)."""
        self._stop_event.set()
        self.join()
        return {
            "peak_rss_mib": round(self.total_mib, 1),
            "peak_breakdown_mib": {k: round(v, 1) for k, v in sorted(self.at_peak[0].items())},
            "peak_processes": self.at_peak[1],
            "peak_by_kind_mib": {k: round(v, 1) for k, v in sorted(self.kind_peak.items())},
            "jvm_seen": self.jvm_seen,
            "rss_samples": self.samples,
            "max_processes": self.max_processes,
            "fork_images_skipped": self.fork_images_skipped,
        }


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """Stop a timed-out scenario and its children, by pid (only processes this harness started)."""
    try:
        root = psutil.Process(proc.pid)
        victims = [*root.children(recursive=True), root]
    except psutil.Error:
        victims = []
    for victim in victims:
        with contextlib.suppress(psutil.Error):
            victim.kill()
    proc.wait()


@dataclass(frozen=True)
class Quiet:
    """When the shared machine is quiet enough to measure: 1-minute load average below ``max_load`` and CPU
    use (over 2-5 s, nothing of ours running) below ``cpu_pct``; waits at most ``max_wait`` seconds."""

    max_wait: float
    max_load: float = math.inf
    cpu_pct: float = 100.0

    def wait(self) -> tuple[float, float]:
        """Seconds waited, and the machine's last CPU use in % (-1: not waited, not measured)."""
        if not self.max_wait:
            return 0.0, -1.0
        started = time.perf_counter()
        busy = psutil.cpu_percent(interval=2.0)
        while (os.getloadavg()[0] >= self.max_load or busy >= self.cpu_pct) and (
            time.perf_counter() - started < self.max_wait
        ):
            busy = psutil.cpu_percent(interval=5.0)
        return time.perf_counter() - started, busy


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _machine_cpu() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, stolen seconds, CPU seconds of this very process)."""
    t = psutil.cpu_times()
    own = resource.getrusage(resource.RUSAGE_SELF)
    return t.user + t.nice + t.system + t.irq + t.softirq, getattr(t, "steal", 0.0), own.ru_utime + own.ru_stime


@dataclass(frozen=True)
class Watched:
    """One command run under the monitor: how it ended, its wall time, the peak RSS of its tree (split by
    kind), the CPU its tree used, and the share of the machine others used meanwhile."""

    returncode: int | None  # None: killed at the timeout
    wall_s: float
    peak: Result
    tree_cpu_s: float
    others_cpu_pct: float
    steal_pct: float


def watch(command: Sequence[str], env: Mapping[str, str], log: Path, timeout: float) -> Watched:
    """Run ``command`` (output to ``log``) under a :class:`TreeMonitor`, killing its tree at ``timeout``."""
    busy0, steal0, own0 = _machine_cpu()
    started = time.perf_counter()
    with log.open("wb") as sink:
        proc = subprocess.Popen(list(command), cwd=ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT)
        monitor = TreeMonitor(proc.pid)
        monitor.start()
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            returncode = None
        wall = time.perf_counter() - started
        peak = monitor.stop()
    busy1, steal1, own1 = _machine_cpu()
    capacity = wall * (os.cpu_count() or 1)
    others = max(0.0, (busy1 - busy0) - monitor.tree_cpu_s - (own1 - own0)) / capacity * 100
    return Watched(returncode, wall, peak, monitor.tree_cpu_s, others, (steal1 - steal0) / capacity * 100)


def measure(name: str, argv: Sequence[str], env: Mapping[str, str], out: Path, quiet: Quiet, timeout: float) -> Result:
    """Run ``python -m bench.child ARGV`` under the monitor, once the machine is quiet: the JSON the process
    wrote about itself, plus wall time, return code, peak RSS, CPU of its tree and of others, the load."""
    result_file, log = out / "results" / f"{name}.json", out / "logs" / f"{name}.log"
    for folder in (result_file.parent, log.parent):
        folder.mkdir(parents=True, exist_ok=True)
    result_file.unlink(missing_ok=True)
    waited, cpu_before = quiet.wait()
    load_before = _load()
    print(f"[bench] {name}: {shlex.join(argv)} (load {load_before}, waited {waited:.0f} s)", flush=True)
    command = [sys.executable, "-m", "bench.child", *argv, "--out", str(result_file)]
    run = watch(command, env, log, timeout)
    returncode, wall, peak, others = run.returncode, run.wall_s, run.peak, run.others_cpu_pct
    if result_file.exists():
        data: Result = json.loads(result_file.read_text())
    else:
        data = {"ok": False, "error": f"no result ({'timed out' if returncode is None else 'crashed'}); see {log}"}
    data.update(wall_s=wall, returncode=returncode, log=str(log.relative_to(ROOT)), **peak)
    data.update(
        load_before=load_before, load_after=_load(), waited_s=round(waited, 1), cpu_before_pct=round(cpu_before, 1)
    )
    data.update(tree_cpu_s=round(run.tree_cpu_s, 1), others_cpu_pct=round(others, 1))
    data.update(steal_pct=round(run.steal_pct, 1), measured_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M UTC}")
    ok = data.get("ok", True) and returncode == 0
    shown = data.get("run_s", data.get("plan_s"))
    print(
        f"[bench] {name}: {'ok' if ok else 'FAILED'} in {wall:.1f} s, measured "
        f"{f'{shown:.2f} s' if isinstance(shown, int | float) else '-'}, peak RSS {peak['peak_rss_mib']:.0f} MiB, "
        f"others' CPU {others:.0f}%, load after {data['load_after']}" + ("" if ok else f"  {data.get('error')}"),
        flush=True,
    )
    return data


def scenario_env(data_folder: Path, prefect_home: Path, extra: Mapping[str, str]) -> dict[str, str]:
    """A scenario's environment: its own data and result folders, a Prefect home, the jar cache, ``extra``.

    Any BACKFILL_*/PREFECT_*/BENCH_* of the caller's shell is dropped (a PREFECT_API_URL would send the runs
    to someone's server; a BACKFILL_LEDGER_PATH would share a ledger between scenarios).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKFILL_", "PREFECT_", "BENCH_"))}
    env.update(JAVA_HOME=JAVA_HOME, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p))
    env.update(BACKFILL_CACHE_DIR=os.environ.get("BACKFILL_CACHE_DIR", str(ROOT / ".cache")))  # worktrees share jars
    env.update(BACKFILL_DATA_DIR=str(data_folder / "data"), BACKFILL_RESULT_STORAGE_PATH=str(data_folder / "results"))
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return env | {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120", **extra}


def machine_info() -> Result:
    """Enough about the machine to read the numbers: cores, CPU, RAM, load, versions."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), model)
    info = {"cpus": os.cpu_count(), "cpu_model": model, "ram_gib": psutil.virtual_memory().total / 1024**3}
    info |= {"load_before": _load(), "python": platform.python_version(), "java_home": JAVA_HOME}
    return info | {name: metadata.version(name) for name in ("pyspark", "prefect")}
