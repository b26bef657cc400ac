"""Catalog tables: names to metastore entries, entries to storage, the one setting, and what happens when the
metastore does not answer (fast: no metastore; the real one is in tests/e2e/test_catalog_tables.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from prefect_backfill.catalog import catalog_storage, resolved, split_name, storage_of, table_storage, with_storage
from prefect_backfill.engine.spark import spark_conf
from prefect_backfill.errors import CatalogUnavailableError, ConfigurationError
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.settings import BackfillSettings, get_settings

DELTA = {"spark.sql.sources.provider": "delta"}


def _settings(**kw: object) -> BackfillSettings:
    return BackfillSettings(cache_dir=Path("/tmp/backfill-cache"), **kw)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nobody listens there


def _pipeline(source: str, target: str) -> Pipeline:
    return Pipeline(
        name="p",
        source=TableRef(source),
        target=TableRef(target),
        partition_column="d",
        transform=lambda df: df,
        version="1",
    )


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("orders", ("default", "orders")),
        ("Silver.Orders", ("silver", "orders")),
        ("spark_catalog.silver.orders", ("silver", "orders")),
        ("main.silver.orders", None),  # another catalog's table: not this metastore's to answer
    ],
)
def test_a_catalog_name_is_a_database_and_a_table_of_the_metastore(name: str, entry: tuple[str, str] | None) -> None:
    assert split_name(name) == entry


def test_a_delta_entry_stores_its_files_where_spark_put_its_path() -> None:
    # Spark keeps a data source table's path in the storage parameters; the entry's location can differ.
    assert (
        storage_of(DELTA, {"path": "file:/lake/silver.db/orders"}, "file:/lake/placeholder") == "/lake/silver.db/orders"
    )
    assert storage_of(DELTA, {}, "file:///lake/silver.db/orders/") == "/lake/silver.db/orders"
    assert storage_of(DELTA, {"path": "s3a://lake/silver/orders"}, None) == "s3a://lake/silver/orders"


def test_an_entry_that_is_not_delta_has_no_storage_for_the_package() -> None:
    assert storage_of({"spark.sql.sources.provider": "parquet"}, {"path": "/lake/x"}, "/lake/x") is None
    assert storage_of({}, {}, "/warehouse/hive_table") is None  # a Hive table


def test_a_table_ref_carries_its_storage_without_changing_its_identity() -> None:
    named = TableRef("silver.orders")
    stored = named.stored_at("/lake/silver.db/orders")
    assert named.path is None and stored.path == "/lake/silver.db/orders"
    assert stored == named and not stored.is_path and str(stored) == "silver.orders"
    path = TableRef("/lake/silver/orders")
    assert path.stored_at("/elsewhere") is path and path.path == "/lake/silver/orders"


def test_resolving_asks_nothing_of_paths_or_without_a_metastore() -> None:
    paths = _pipeline("/lake/bronze/orders", "/lake/silver/orders")
    assert resolved(paths, _settings(metastore_uri="thrift://127.0.0.1:1")) is paths  # port 1: never asked
    named = _pipeline("bronze.orders", "silver.orders")
    assert resolved(named, _settings()) is named
    assert catalog_storage(named.target, _settings()) is None


def test_with_storage_keeps_what_a_worker_was_told() -> None:
    named = _pipeline("bronze.orders", "silver.orders")
    found = with_storage(named, None, "/lake/silver.db/orders")
    assert found.target.path == "/lake/silver.db/orders" and found.source.path is None
    assert found.fingerprint == named.fingerprint  # the same pipeline, its files located
    assert with_storage(found, None, None).target.path == "/lake/silver.db/orders"


def test_a_metastore_that_does_not_answer_is_one_line_naming_the_setting() -> None:
    uri = f"thrift://127.0.0.1:{_closed_port()}"
    with pytest.raises(CatalogUnavailableError) as caught:
        table_storage(uri, "silver", "orders")
    message = str(caught.value)
    assert "\n" not in message and uri in message and "BACKFILL_METASTORE_URI" in message
    assert caught.value.exit_code == 1


@pytest.mark.parametrize("uri", ["http://host:9083", "thrift://host", "thrift://:9083", "host:9083"])
def test_a_metastore_address_that_is_not_thrift_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, uri: str) -> None:
    monkeypatch.setenv("BACKFILL_METASTORE_URI", uri)
    with pytest.raises(ConfigurationError, match=r"BACKFILL_METASTORE_URI.*thrift://host:9083"):
        get_settings()


def test_the_metastore_setting_gives_spark_its_hive_catalog() -> None:
    conf = spark_conf(_settings(metastore_uri="thrift://meta:9083"))
    assert conf["spark.sql.catalogImplementation"] == "hive"
    assert conf["spark.hadoop.hive.metastore.uris"] == "thrift://meta:9083"
    assert "spark.sql.catalogImplementation" not in spark_conf(_settings())
