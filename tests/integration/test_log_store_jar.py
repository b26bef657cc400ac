"""The Delta log store's jar: compiled from the shipped source on first use, then reused; a clear error when
Delta's jars are not there to compile against."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from prefect_backfill.engine.log_store import LOG_STORE_CLASS, log_store_jar
from prefect_backfill.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]


def test_the_jar_is_compiled_once_and_holds_the_store(tmp_path: Path) -> None:
    (tmp_path / "ivy").symlink_to((ROOT / ".cache" / "ivy").resolve())  # Delta's jars, fetched by `make setup`

    jar = log_store_jar(tmp_path)

    assert jar.parent == tmp_path / "jars" and jar.name.startswith("backfill-logstore-")
    assert f"{LOG_STORE_CLASS.replace('.', '/')}.class" in zipfile.ZipFile(jar).namelist()
    assert [path.name for path in (tmp_path / "jars").iterdir()] == [jar.name]  # no temporary left behind
    built = jar.stat().st_mtime_ns
    assert log_store_jar(tmp_path) == jar and jar.stat().st_mtime_ns == built


def test_without_delta_jars_it_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="make setup"):
        log_store_jar(tmp_path)
