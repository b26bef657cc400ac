"""One process at a time fetches jars into the shared Ivy cache (a fresh clone's three pytest workers once
copied the 650 MB AWS bundle over each other and two JVMs exited at start)."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from prefect_backfill.engine.jar_fetch import one_fetch_at_a_time, resolved_jars, stamp_path

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


def test_the_jars_resolved_once_are_given_to_later_starts_while_they_are_all_there(tmp_path: Path) -> None:
    jars = tmp_path / "jars"
    jars.mkdir()
    delta, aws = jars / "io.delta_delta-spark.jar", jars / "org.apache.hadoop_hadoop-aws.jar"
    for jar in (delta, aws):
        jar.write_bytes(b"PK")
    assert resolved_jars(tmp_path, PACKAGES) is None  # never resolved here
    with one_fetch_at_a_time(tmp_path, PACKAGES) as remember:
        # spark-submit's list: ours (outside the Ivy cache) merged with what Ivy resolved
        remember(["file:///opt/elsewhere/logstore.jar", f"file://{delta}", f"file://{aws}"])
    again = resolved_jars(tmp_path, ",".join(reversed(PACKAGES.split(","))))  # the same set in another order
    assert again == [f"file://{delta}", f"file://{aws}"]
    assert resolved_jars(tmp_path, "io.delta:delta-spark_4.2_2.13:4.4.0") is None  # another set
    aws.unlink()
    assert resolved_jars(tmp_path, PACKAGES) is None  # a jar went: resolve again rather than start without it


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
