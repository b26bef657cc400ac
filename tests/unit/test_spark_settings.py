"""Spark by settings: what a classic driver, a Spark Connect client and a Connect server are given,
and the FAIR pool of a partition's jobs (pure functions: no JVM, no server)."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from unittest import mock

import pytest

from prefect_backfill.engine.delta import SparkDeltaEngine
from prefect_backfill.engine.predicates import job_properties, job_tag
from prefect_backfill.engine.spark import (
    DELTA_PACKAGE,
    _connect,
    connect_address,
    connect_server_command,
    is_remote,
    spark_conf,
    spark_home,
    uses_connect,
)
from prefect_backfill.errors import ConfigurationError
from prefect_backfill.settings import BackfillSettings

DELTA_KEYS = (
    "spark.jars.packages",
    "spark.jars.ivy",
    "spark.jars.ivySettings",
    "spark.jars.excludes",
    "spark.sql.extensions",
    "spark.sql.catalog.spark_catalog",
)


def settings(**kw: object) -> BackfillSettings:
    return BackfillSettings(cache_dir=Path("/tmp/backfill-cache"), **kw)  # type: ignore[arg-type]


def conf_pairs(command: list[str]) -> dict[str, str]:
    """The ``--conf key=value`` pairs of a spark-submit command line."""
    pairs = {}
    for flag, value in itertools.pairwise(command):
        if flag == "--conf":
            key, _, val = value.partition("=")
            pairs[key] = val
    return pairs


def test_classic_conf_is_a_full_driver_with_delta() -> None:
    conf = spark_conf(settings(spark_master="spark://10.0.0.5:7077"))
    assert conf["spark.master"] == "spark://10.0.0.5:7077"
    assert conf["spark.jars.packages"] == DELTA_PACKAGE
    assert conf["spark.jars.ivy"] == str(Path("/tmp/backfill-cache/ivy").resolve())
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.scheduler.mode"] == "FAIR"
    assert conf["spark.sql.session.timeZone"] == "UTC"


def test_remote_conf_holds_only_session_confs_and_the_extras() -> None:
    extra = {"spark.sql.ansi.enabled": "true", "spark.sql.shuffle.partitions": "8"}
    conf = spark_conf(settings(spark_remote="sc://spark.internal:15002", spark_conf=extra))
    assert conf == {
        "spark.sql.shuffle.partitions": "8",  # the extras win, as on classic
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.ansi.enabled": "true",
    }
    assert not set(DELTA_KEYS) & set(conf)  # no jars, no extensions: the server has them
    assert "spark.master" not in conf and "spark.driver.memory" not in conf


def test_extra_conf_overrides_the_classic_conf() -> None:
    conf = spark_conf(settings(spark_conf={"spark.driver.memory": "6g", "spark.executor.cores": "4"}))
    assert conf["spark.driver.memory"] == "6g" and conf["spark.executor.cores"] == "4"


@pytest.mark.parametrize(
    ("remote", "expected"), [(None, False), ("", False), ("  ", False), ("sc://127.0.0.1:15002", True)]
)
def test_uses_connect_only_with_a_remote_url(remote: str | None, expected: bool) -> None:
    assert uses_connect(settings(spark_remote=remote)) is expected


def test_remote_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_SPARK_REMOTE", "sc://10.1.2.3:15002")
    monkeypatch.setenv("BACKFILL_SPARK_POOL", "nightly")
    loaded = BackfillSettings()
    assert uses_connect(loaded) and loaded.spark_pool == "nightly"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("sc://127.0.0.1:15003", ("127.0.0.1", 15003)),
        ("sc://spark.internal", ("spark.internal", 15002)),
        ("sc://spark.internal:443/;use_ssl=true;token=abc", ("spark.internal", 443)),
        (" sc://h:1 ", ("h", 1)),
    ],
)
def test_connect_address(url: str, address: tuple[str, int]) -> None:
    assert connect_address(url) == address


@pytest.mark.parametrize("url", ["http://h:15002", "h:15002", "sc://", "sc://h:notaport"])
def test_connect_address_rejects_what_is_not_a_connect_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="BACKFILL_SPARK_REMOTE"):
        connect_address(url)


def test_no_server_is_a_one_line_configuration_error_at_once() -> None:
    with socket.socket() as s:  # a port nobody listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigurationError) as raised:
        _connect(settings(spark_remote=f"sc://127.0.0.1:{port}"), probe_timeout=2)
    message = str(raised.value)
    assert message.startswith(f"Spark Connect at sc://127.0.0.1:{port} did not answer: start the server or fix ")
    assert "BACKFILL_SPARK_REMOTE" in message and "\n" not in message


def test_spark_home_is_the_pyspark_package_with_its_launchers() -> None:
    home = spark_home()
    assert home.name == "pyspark"
    assert (home / "bin" / "spark-submit").is_file() and (home / "bin" / "spark-class").is_file()


def test_connect_server_command_line() -> None:
    s = settings(spark_conf={"spark.executor.memory": "3g"}, spark_remote="sc://ignored:1")
    command = connect_server_command(s, 15123)
    assert command[0] == str(spark_home() / "bin" / "spark-submit")
    assert command[1:3] == ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer"]
    assert command[-1] == "spark-internal"
    assert len(command) == 3 + 2 * len(conf_pairs(command)) + 1  # nothing but --conf pairs in between
    pairs = conf_pairs(command)
    assert pairs["spark.connect.grpc.binding.address"] == "127.0.0.1"
    assert pairs["spark.connect.grpc.binding.port"] == "15123"
    classic = spark_conf(settings(spark_conf={"spark.executor.memory": "3g"}))
    for key in (*DELTA_KEYS, "spark.master", "spark.driver.memory", "spark.sql.session.timeZone"):
        assert pairs[key] == classic[key], key  # the server is the driver a local session would be
    assert pairs["spark.executor.memory"] == "3g"
    assert conf_pairs(connect_server_command(s, 15124, host="0.0.0.0"))["spark.connect.grpc.binding.address"] == (
        "0.0.0.0"
    )


def test_is_remote_tells_a_connect_session_from_anything_else() -> None:
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    assert is_remote(mock.MagicMock(spec=RemoteSparkSession))
    assert not is_remote(mock.MagicMock(spec=SparkSession))


def test_partition_jobs_are_tagged_and_pooled_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert job_properties("demo_orders", "2024-01-03", "nightly") == {
        "spark.job.description": "backfill demo_orders 2024-01-03",
        "spark.scheduler.pool": "nightly",
    }
    assert job_tag("demo_orders", "2024-01-03T05") == "backfill:demo_orders:2024-01-03T05"
    assert "," not in job_tag("a,b", "2024-01")
    assert SparkDeltaEngine()._pool == "backfill"  # the default pool of fairscheduler.xml
    monkeypatch.setenv("BACKFILL_SPARK_POOL", "nightly")
    assert SparkDeltaEngine()._pool == "nightly"


def test_cancel_uses_the_chunks_tag_the_session_kind_can_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    from pyspark.sql import SparkSession
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    from prefect_backfill.demo import to_silver_orders
    from prefect_backfill.partitions import Grain, Partition
    from prefect_backfill.pipeline import Pipeline, TableRef

    pipeline = Pipeline(
        "demo_orders", TableRef("/lake/bronze"), TableRef("/lake/silver"), "order_date", to_silver_orders, "1"
    )
    chunk = [Partition(datetime(2024, 1, d), Grain.DAY) for d in (4, 3, 5)]
    classic, remote = mock.MagicMock(spec=SparkSession), mock.MagicMock(spec=RemoteSparkSession)
    for session in (classic, remote):
        monkeypatch.setattr("prefect_backfill.engine.delta.started_spark", lambda s=session: s)
        SparkDeltaEngine().cancel(pipeline, chunk)
        SparkDeltaEngine().cancel(pipeline)  # a stop signal: all the pipeline's work in this process
    assert [c.args for c in classic.sparkContext.cancelJobsWithTag.call_args_list] == [
        ("backfill:demo_orders:2024-01-03..2024-01-05",),
        ("backfill:demo_orders",),
    ]
    classic.interruptTag.assert_not_called()  # from another thread it cancels nothing on classic
    assert [c.args for c in remote.interruptTag.call_args_list] == [
        ("backfill:demo_orders:2024-01-03..2024-01-05",),
        ("backfill:demo_orders",),
    ]


def test_cancel_before_spark_started_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C while the JVM is still starting must not start one to cancel nothing."""
    from prefect_backfill.demo import to_silver_orders
    from prefect_backfill.pipeline import Pipeline, TableRef

    pipeline = Pipeline(
        "demo_orders", TableRef("/lake/bronze"), TableRef("/lake/silver"), "order_date", to_silver_orders, "1"
    )
    monkeypatch.setattr("prefect_backfill.engine.delta.started_spark", lambda: None)
    monkeypatch.setattr("prefect_backfill.engine.delta.get_spark", mock.Mock(side_effect=AssertionError("started")))
    SparkDeltaEngine().cancel(pipeline)
