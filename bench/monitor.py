"""Peak RSS of a whole process tree, sampled from outside every ~0.2 s.

The tree is the scenario's Python process plus its descendants: the Spark JVM and, for the package,
Prefect's temporary API server. Sampling from the parent keeps the measurement out of the measured
process. Two corrections keep the sum honest:

* A process the JVM (or Python) is forking shows, until it execs, the *parent's* address space: same
  virtual size, same RSS. The JVM forks helper processes while it writes (e.g. Hadoop's shell commands
  when its native library is missing), so a naive sum sometimes counts the JVM twice (seen: +1.4 GiB on
  one sample of the seed run). A child whose virtual size equals its parent's is such a fork image and
  is counted once, as its parent.
* Sums of RSS still count pages shared between distinct processes more than once; that is the same for
  every scenario.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

__all__ = ["TreeMonitor", "TreePeak", "kill_tree"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Proc:
    pid: int
    ppid: int
    name: str
    rss: int
    vms: int


def _kind(proc: _Proc, root_pid: int) -> str:
    """Bucket a process: the scenario itself, the JVM, or anything else (Prefect's server, helpers)."""
    if proc.pid == root_pid:
        return "python"
    return "jvm" if "java" in proc.name.lower() else "other"


@dataclass
class TreePeak:
    """Peaks seen in a tree: total, per kind, and whether a JVM ever appeared (the resume check)."""

    total_mib: float = 0.0
    at_peak_mib: dict[str, float] = field(default_factory=dict)
    at_peak_processes: list[str] = field(default_factory=list)
    kind_peak_mib: dict[str, float] = field(default_factory=dict)
    jvm_seen: bool = False
    samples: int = 0
    max_processes: int = 0
    fork_images_skipped: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "peak_rss_mib": round(self.total_mib, 1),
            "peak_breakdown_mib": {k: round(v, 1) for k, v in sorted(self.at_peak_mib.items())},
            "peak_processes": self.at_peak_processes,
            "peak_by_kind_mib": {k: round(v, 1) for k, v in sorted(self.kind_peak_mib.items())},
            "jvm_seen": self.jvm_seen,
            "rss_samples": self.samples,
            "max_processes": self.max_processes,
            "fork_images_skipped": self.fork_images_skipped,
        }


class TreeMonitor(threading.Thread):
    """Sample the RSS of ``pid`` and all its descendants until :meth:`stop`."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(name=f"rss-{pid}", daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = TreePeak()
        self._stop_event = threading.Event()

    def _snapshot(self) -> list[_Proc]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        out: list[_Proc] = []
        for proc in procs:
            try:
                with proc.oneshot():
                    mem = proc.memory_info()
                    out.append(_Proc(proc.pid, proc.ppid(), proc.name(), mem.rss, mem.vms))
            except psutil.Error:  # exited between listing and reading
                continue
        return out

    def sample(self) -> None:
        procs = self._snapshot()
        if not procs:
            return
        vms_of = {p.pid: p.vms for p in procs}
        by_kind: dict[str, float] = {}
        counted: list[str] = []
        peak = self.peak
        for proc in procs:
            if proc.pid != self.pid and vms_of.get(proc.ppid) == proc.vms:
                peak.fork_images_skipped += 1  # a fork/vfork image of its parent: already counted
                continue
            kind = _kind(proc, self.pid)
            by_kind[kind] = by_kind.get(kind, 0.0) + proc.rss / MIB
            counted.append(f"{proc.name}[{proc.pid}] {proc.rss / MIB:.0f} MiB")
        peak.samples += 1
        peak.max_processes = max(peak.max_processes, len(procs))
        peak.jvm_seen = peak.jvm_seen or "jvm" in by_kind
        for kind, rss in by_kind.items():
            peak.kind_peak_mib[kind] = max(peak.kind_peak_mib.get(kind, 0.0), rss)
        total = sum(by_kind.values())
        if total > peak.total_mib:
            peak.total_mib, peak.at_peak_mib, peak.at_peak_processes = total, by_kind, counted

    def run(self) -> None:
        while not self._stop_event.is_set():
            started = time.monotonic()
            self.sample()
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> TreePeak:
        self._stop_event.set()
        self.join()
        return self.peak


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
