"""A Spark that does not start says why in one line, and where the JVM's own output is (it no longer
reaches the terminal: prefect_backfill.engine.jvm_output)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_cli_subprocess import backfill


def test_a_jvm_that_cannot_start_gives_one_line_with_its_reason_and_its_log(tmp_path: Path) -> None:
    code, lines = backfill("setup", env={"BACKFILL_SPARK_DRIVER_MEMORY": "12q"}, timeout=120)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: Spark did not start (JAVA_GATEWAY_EXITED: Invalid maximum heap size"), lines
    found = re.search(r"Spark's output is in (\S+\.log)$", lines[0])
    assert found, lines
    assert "Could not create the Java Virtual Machine" in Path(found.group(1)).read_text()
