"""One process at a time fetches Spark's jars into the shared Ivy cache.

Spark's Ivy resolver takes no lock: two processes starting Spark with packages not yet in the cache both
download them and both copy them into ``<ivy>/jars``, and a third JVM opening a jar while it is copied
exits before sending its port (the S3A connector's AWS bundle is 650 MB, so the window is wide). It happened
to three pytest workers on a fresh clone, and it would to two ``backfill run`` commands on a fresh machine.

So a JVM start whose package set has never been resolved in this cache takes an exclusive file lock
(released by the kernel if the process dies) and, once Spark has started, leaves a stamp listing the jars
Ivy resolved. Later starts of the same set give Spark those jars directly: no lock, and no Ivy resolution
either (2-3 s of CPU at every start, paid by every `backfill run`, flow-run process and worker).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

_LOCK_NAME = ".fetch.lock"


def stamp_path(ivy_dir: Path, packages: str) -> Path:
    """The file that says ``packages`` (Spark's comma-separated coordinates) were resolved here once."""
    key = ",".join(sorted(part.strip() for part in packages.split(",") if part.strip()))
    return ivy_dir / f".resolved-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def resolved_jars(ivy_dir: Path, packages: str | None) -> list[str] | None:
    """The jars Ivy resolved for ``packages`` in this cache, if it did and they are all still there."""
    if not packages:
        return None
    try:
        jars = stamp_path(ivy_dir, packages).read_text().split()
    except OSError:
        return None
    if not jars or not all(Path(_local_path(jar)).is_file() for jar in jars):
        return None
    return jars


def _local_path(jar: str) -> str:
    parts = urlsplit(jar)
    return unquote(parts.path) if parts.scheme == "file" else jar


@contextmanager
def one_fetch_at_a_time(ivy_dir: Path, packages: str | None) -> Iterator[Callable[[Sequence[str]], None]]:
    """Run the body (a JVM start) alone among the processes that would fetch ``packages`` into ``ivy_dir``.
    The body calls what it is given with the jars Spark ended up with; those under ``ivy_dir`` become the
    set's stamp (see :func:`resolved_jars`). Nothing to fetch (no packages): no lock, nothing recorded."""
    if not packages:
        yield _forget
        return
    stamp = stamp_path(ivy_dir, packages)
    ivy_dir.mkdir(parents=True, exist_ok=True)

    def remember(jars: Sequence[str]) -> None:
        ours = [jar for jar in jars if _local_path(jar).startswith(str(ivy_dir))]
        if ours:
            partial = stamp.with_name(f"{stamp.name}.{id(ours)}")
            partial.write_text("\n".join(ours) + "\n")
            partial.replace(stamp)

    with open(ivy_dir / _LOCK_NAME, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger(__name__).info("waiting for another process fetching Spark's jars into %s", ivy_dir)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield remember
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _forget(jars: Sequence[str]) -> None:
    """Nothing was fetched: nothing to remember."""
