"""One process at a time fetches jars into the shared Ivy cache (a fresh clone's three pytest workers once
copied the 650 MB AWS bundle over each other and two JVMs exited at start)."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from prefect_backfill.engine.jar_fetch import one_fetch_at_a_time, stamp_path

PACKAGES = "io.delta:delta-spark_4.2_2.13:4.4.0,org.apache.hadoop:hadoop-aws:3.5.0"


def test_a_second_fetch_of_an_unresolved_set_waits_for_the_first(tmp_path: Path) -> None:
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with one_fetch_at_a_time(tmp_path, PACKAGES):
            order.append("first in")
            inside.set()
            release.wait(5)
            order.append("first out")

    def second() -> None:
        with one_fetch_at_a_time(tmp_path, PACKAGES):
            order.append("second in")

    a = threading.Thread(target=first)
    a.start()
    assert inside.wait(5)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.3)
    assert order == ["first in"], "the second start went ahead while the first was fetching"
    release.set()
    a.join(5)
    b.join(5)
    assert order == ["first in", "first out", "second in"]


def test_once_resolved_a_start_takes_no_lock(tmp_path: Path) -> None:
    with one_fetch_at_a_time(tmp_path, PACKAGES):
        pass
    assert stamp_path(tmp_path, PACKAGES).exists()
    # Someone holds the lock (a fetch of another set): a start of the stamped set does not wait for it.
    with open(tmp_path / ".fetch.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = threading.Event()

        def start() -> None:
            with one_fetch_at_a_time(tmp_path, ",".join(reversed(PACKAGES.split(",")))):
                done.set()

        threading.Thread(target=start, daemon=True).start()
        assert done.wait(2), "a start of an already resolved set waited for the fetch lock"


def test_a_failed_start_leaves_no_stamp_and_frees_the_lock(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), one_fetch_at_a_time(tmp_path, PACKAGES):
        raise RuntimeError("JAVA_GATEWAY_EXITED")
    assert not stamp_path(tmp_path, PACKAGES).exists()
    with open(tmp_path / ".fetch.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if the failed start kept it


def test_no_packages_no_lock(tmp_path: Path) -> None:
    with one_fetch_at_a_time(tmp_path / "absent", None):
        pass
    assert not (tmp_path / "absent").exists()
