"""The class archive's name follows what the JVM checks it against; no archive, no option."""

from __future__ import annotations

from pathlib import Path

from prefect_backfill.engine import class_archive

JARS = [("spark-core_2.13-4.2.0.jar", 16_000_000, 1_700_000_000_000_000_000), ("delta.jar", 100, 5)]


def test_the_key_changes_with_the_jdk_and_with_any_jar_but_not_with_their_order() -> None:
    key = class_archive.archive_key(b'JAVA_VERSION="17.0.15"', "/usr/lib/jvm/17", JARS)
    assert key == class_archive.archive_key(b'JAVA_VERSION="17.0.15"', "/usr/lib/jvm/17", JARS[::-1])
    assert key != class_archive.archive_key(b'JAVA_VERSION="17.0.16"', "/usr/lib/jvm/17", JARS)
    assert key != class_archive.archive_key(b'JAVA_VERSION="17.0.15"', "/usr/lib/jvm/21", JARS)
    touched = [(JARS[0][0], JARS[0][1], JARS[0][2] + 1), JARS[1]]  # a reinstalled pyspark: same names, new times
    assert key != class_archive.archive_key(b'JAVA_VERSION="17.0.15"', "/usr/lib/jvm/17", touched)


def test_no_archive_in_the_cache_means_no_option_and_one_means_its_absolute_path(tmp_path: Path) -> None:
    assert class_archive.use_options(tmp_path) == []
    path = class_archive.archive_path(tmp_path)
    assert path is not None and path.parent == tmp_path / "jvm"
    path.parent.mkdir()
    path.write_bytes(b"x")
    options = class_archive.use_options(tmp_path)
    assert options[0] == f"-XX:SharedArchiveFile={path.resolve()}"
    assert "-Xshare:auto" in options  # a JVM that cannot map it starts without it, and says nothing


def test_an_archive_is_kept_only_when_the_jvm_wrote_one(tmp_path: Path) -> None:
    part, path = tmp_path / "a.jsa.1.part", tmp_path / "a.jsa"
    assert not class_archive.keep(part, path) and not path.exists()
    part.write_bytes(b"")
    assert not class_archive.keep(part, path) and not part.exists() and not path.exists()
    part.write_bytes(b"archive")
    assert class_archive.keep(part, path) and path.read_bytes() == b"archive" and not part.exists()
