"""The JVM's own output goes to a log file under the cache; its error line reaches the one-line message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefect_backfill.engine import jvm_output


def test_a_new_log_per_start_and_only_the_newest_thirty_kept(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(35):
        old = logs / f"spark-2026010{i:02d}-000000-1.log"
        old.write_text("old")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    log = jvm_output.new_log(tmp_path)
    assert log.parent == logs.resolve() and jvm_output.current_log() == log
    kept = sorted(logs.glob("spark-*.log"))
    assert len(kept) == 29  # the new one makes thirty
    assert not (logs / "spark-202601000-000000-1.log").exists()  # the oldest went


def test_the_first_error_line_of_the_jvm_output(tmp_path: Path) -> None:
    log = tmp_path / "spark.log"
    log.write_text(
        ":: resolving dependencies :: org.apache.spark#spark-submit-parent\n"
        'Exception in thread "main" java.lang.RuntimeException: [unresolved dependency: io.delta#x;9: not found]\n'
        "\tat org.apache.spark.deploy.SparkSubmitUtils$.resolveMavenCoordinates(SparkSubmit.scala:1)\n"
        "\t... 19 more\n"
    )
    assert jvm_output.first_error(log) == (
        'Exception in thread "main" java.lang.RuntimeException: [unresolved dependency: io.delta#x;9: not found]'
    )
    assert jvm_output.first_error(tmp_path / "absent.log") is None
    (tmp_path / "heap.log").write_text(
        "Invalid maximum heap size: -Xmx12q\nError: Could not create the Java Virtual Machine.\n"
        "Error: A fatal exception has occurred. Program will exit.\n"
    )
    assert jvm_output.first_error(tmp_path / "heap.log") == (
        "Invalid maximum heap size: -Xmx12q (Error: Could not create the Java Virtual Machine.)"
    )
    (tmp_path / "quiet.log").write_text('Setting default log level to "WARN".\n')
    assert jvm_output.first_error(tmp_path / "quiet.log") is None


def test_a_log_another_process_removed_meanwhile_fails_no_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes starting side by side prune the same folder: one lists a log the other then removes."""
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(3):
        (logs / f"spark-2026010{i}-000000-1.log").write_text("old")
    listed = list(logs.glob("spark-*.log"))
    (logs / "spark-20260100-000000-1.log").unlink()  # gone between the listing and its stat
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(listed))
    log = jvm_output.new_log(tmp_path)
    assert log.parent == logs.resolve()
