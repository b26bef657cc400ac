"""One process at a time fetches Spark's jars into the shared Ivy cache.

Spark's Ivy resolver takes no lock: two processes starting Spark with packages not yet in the cache both
download them and both copy them into ``<ivy>/jars``, and a third JVM opening a jar while it is copied
exits before sending its port (the S3A connector's AWS bundle is 650 MB, so the window is wide). It happened
to three pytest workers on a fresh clone, and it would to two ``backfill run`` commands on a fresh machine.

So a JVM start whose package set has never been resolved in this cache takes an exclusive file lock
(released by the kernel if the process dies) and, once Spark has started, leaves a stamp: later starts of
the same set skip the lock altogether, so the cost is paid once per cache, not per run.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_LOCK_NAME = ".fetch.lock"


def stamp_path(ivy_dir: Path, packages: str) -> Path:
    """The file that says ``packages`` (Spark's comma-separated coordinates) were resolved here once."""
    key = ",".join(sorted(part.strip() for part in packages.split(",") if part.strip()))
    return ivy_dir / f".resolved-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@contextmanager
def one_fetch_at_a_time(ivy_dir: Path, packages: str | None) -> Iterator[None]:
    """Run the body (a JVM start) alone among the processes that would fetch ``packages`` into ``ivy_dir``;
    on success, stamp the set as resolved. Nothing to fetch (no packages, or stamped): no lock."""
    if not packages:
        yield
        return
    stamp = stamp_path(ivy_dir, packages)
    if stamp.exists():
        yield
        return
    ivy_dir.mkdir(parents=True, exist_ok=True)
    with open(ivy_dir / _LOCK_NAME, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger(__name__).info("waiting for another process fetching Spark's jars into %s", ivy_dir)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
            stamp.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
