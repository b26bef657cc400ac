"""Where the test suite's CPU goes, per test: sample every process while ``make test`` runs.

``python -m bench.suite_cpu OUT.json`` samples ``/proc`` every 2 s until SIGTERM/SIGINT, then writes the CPU
seconds (user + system) of every process it saw, attributed to the test that started it: a process inherits
``PYTEST_CURRENT_TEST`` from the pytest worker that was running that test when it started it (a CLI run, its
embedded server and its JVM, a worker, a server). What no test started is attributed to its kind (``pytest``
for the workers themselves, ``worker-jvm`` for a worker's in-process Spark driver, which serves every test
of that worker). ``python -m bench.suite_cpu --report OUT.json`` prints the totals per test and per kind.

Linux only; the sampler itself costs well under 1 % of a core. A process's CPU after its last sample (up to
2 s) is not counted, so short processes are undercounted: compare tests, not absolute totals.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HZ = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _ticks(pid: int) -> tuple[int, int, int, bytes] | None:
    """(CPU ticks, parent pid, start time, command name) of ``pid``: a pid is reused many times in a suite
    run, so a process is known by its pid and its start time together; its command name changes when it
    execs another program (``spark-submit`` is a shell script that execs Java)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    head, tail = stat.rsplit(b")", 1)
    fields = tail.split()  # fields[0] is field 3 of proc(5): state
    return int(fields[11]) + int(fields[12]), int(fields[1]), int(fields[19]), head.split(b"(", 1)[-1]


def _kind(pid: int, parent_kind: str | None) -> tuple[str, str]:
    """(test node id or "", kind) of a process seen for the first time."""
    cmdline = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace")
    environ = (_read(f"/proc/{pid}/environ") or b"").split(b"\0")
    test = next((e[20:].decode(errors="replace") for e in environ if e.startswith(b"PYTEST_CURRENT_TEST=")), "")
    test = test.rsplit(" (", 1)[0]
    exe = os.path.basename(cmdline.split(" ", 1)[0])
    if exe == "java":
        kind = "jvm"
    elif any(word in cmdline for word in ("xdist", "pytest", "execmodel", "exec(eval(sys.stdin")):  # xdist's workers
        kind = "pytest"
    elif "_server_child" in cmdline:
        kind = "embedded-server"
    elif "bin/backfill" in cmdline:
        kind = "backfill-cli"
    elif "server start" in cmdline or "prefect.server.api.server:create_app" in cmdline:
        kind = "prefect-server"  # `prefect server start`, or Prefect's own temporary server (uvicorn)
    elif "worker start" in cmdline:
        kind = "prefect-worker"
    elif "prefect.engine" in cmdline:
        kind = "flow-run"  # a deployed run, started by a process worker
    elif "distributed" in cmdline or "dask" in cmdline:
        kind = "dask"
    elif exe.startswith("python"):
        kind = "python"
    else:
        kind = exe or "?"
    if kind == "jvm" and parent_kind == "pytest":
        return "", "worker-jvm"  # a worker's in-process Spark: every test of that worker uses it
    return test, kind


def sample(out: Path, every: float = 2.0) -> None:
    seen: dict[tuple[int, int], list[Any]] = {}  # (pid, start) -> [test, kind, first ticks, last ticks, comm]
    current: dict[int, tuple[int, int]] = {}  # pid -> the process that has it now
    first = True
    stop = False

    def finish(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    while not stop:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            got = _ticks(pid)
            if got is None:
                continue
            ticks, ppid, started, comm = got
            key = (pid, started)
            if key not in seen or seen[key][4] != comm:  # new, or it exec'd another program: classify (again)
                parent = seen.get(current.get(ppid, (0, 0)))
                test, kind = _kind(pid, parent[1] if parent else None)
                if key in seen:  # still the test that started it, unless it became a worker's own JVM
                    seen[key][0] = "" if kind == "worker-jvm" else seen[key][0]
                    seen[key][1], seen[key][4] = kind, comm
                else:
                    seen[key] = [test, kind, ticks if first else 0, ticks, comm]
                current[pid] = key
            seen[key][3] = ticks
        first = False
        time.sleep(every)
    totals: defaultdict[str, float] = defaultdict(float)
    for test, kind, start, last, _ in seen.values():
        totals[f"{test}\t{kind}"] += (last - start) / HZ
    out.write_text(json.dumps(dict(totals), indent=0))


def report(path: Path, top: int = 40) -> None:
    data: dict[str, float] = json.loads(path.read_text())
    per_test: defaultdict[str, float] = defaultdict(float)
    per_kind: defaultdict[str, float] = defaultdict(float)
    for key, cpu in data.items():
        test, kind = key.split("\t")
        per_test[test or f"(no test: {kind})"] += cpu
        per_kind[kind] += cpu
    total = sum(per_kind.values())
    print(f"total {total:.0f} CPU-s")
    for kind, cpu in _largest(per_kind):
        print(f"  {kind:20s} {cpu:8.0f}  {100 * cpu / total:4.1f} %")
    per_file: defaultdict[str, float] = defaultdict(float)
    for test, cpu in per_test.items():
        per_file[test.split("::", 1)[0]] += cpu
    print("per file:")
    for name, cpu in _largest(per_file, top):
        print(f"  {cpu:8.0f}  {name}")
    print("per test:")
    for name, cpu in _largest(per_test, top):
        print(f"  {cpu:8.0f}  {name}")


def _largest(values: dict[str, float], top: int | None = None) -> list[tuple[str, float]]:
    return sorted(values.items(), key=lambda item: -item[1])[:top]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--report"]:
        report(Path(sys.argv[2]))
    else:
        sample(Path(sys.argv[1]))
