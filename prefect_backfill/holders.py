"""Who holds a lease: a process on a host, told apart from a later process that reuses its pid.

A lease on the local disk or an object store may outlive its holder (``kill -9``, a lost worker). Where
the holder ran on this machine, whether its process still exists is known at once, with no wait for the
lease to expire: the pid alone is not enough (pids are reused), so the process's start time since boot
and the boot's id go with it. Elsewhere only the lease's expiry says the holder is gone.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

__all__ = ["Holder", "this_process"]


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from the
    original; None where /proc does not say."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Holder:
    """Where a lease holder runs: host, boot and process."""

    host: str
    boot_id: str
    pid: int
    pid_start: int | None

    def same_machine(self, other: Holder) -> bool:
        return self.host == other.host and self.boot_id == other.boot_id

    def process_exists(self) -> bool:
        """Whether this holder's process still exists (meaningful on its own machine only)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, owned by someone else
            pass
        ticks = _start_ticks(self.pid)
        return ticks is None or self.pid_start is None or ticks == self.pid_start


@cache
def _this_host() -> tuple[str, str]:
    return socket.gethostname(), _boot_id()


def this_process() -> Holder:
    host, boot = _this_host()
    pid = os.getpid()
    return Holder(host, boot, pid, _start_ticks(pid))
