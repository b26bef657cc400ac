"""Real parts: one local Spark session with the Delta jars for the whole test session, Prefect's
test server, real Delta tables in temporary folders (a fresh target and ledger per test)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from prefect_backfill.demo import generate_orders
from prefect_backfill.pipeline import Pipeline, TableRef, Transform
from prefect_backfill.registry import register

if TYPE_CHECKING:
    from prefect_backfill.testing.object_store import ObjectStore

BRONZE_START, BRONZE_END = "2024-01-01", "2024-01-08"
#: ``@pytest.mark.parametrize("lake", LAKES, indirect=True)``: the test runs on the local disk and on the
#: object store (a real S3-compatible server), source, target and ledger alike.
LAKES = ["local", "s3"]
ROWS_PER_DAY = 40


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(scope="session", autouse=True)
def spark(object_store: ObjectStore) -> Any:
    """The process's Spark, with the S3A connector (the tests' tables are local and on s3a://), started
    before any integration test. An e2e test of the same process may have started one without it (the
    connector is never exported to the processes they start): that one is replaced, JVM and all (a JVM's
    classpath cannot gain the connector)."""
    from prefect_backfill.engine.spark import get_spark, serves_object_store, started_spark, stop_spark

    if started_spark() is not None and not serves_object_store():
        stop_spark(jvm=True)
    return get_spark(object_store=True)


@pytest.fixture(scope="session")
def bronze(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A read-only source shared by all tests: backfills never write their source."""
    path = str(tmp_path_factory.mktemp("bronze") / "orders")
    generate_orders(path, BRONZE_START, BRONZE_END, rows_per_day=ROWS_PER_DAY)
    return path


@pytest.fixture(scope="session")
def s3_bronze(spark: Any, object_store: ObjectStore) -> str:
    """The same source on the object store (written once; backfills never write their source)."""
    path = "s3a://lake/bronze/orders"
    generate_orders(path, BRONZE_START, BRONZE_END, rows_per_day=ROWS_PER_DAY)
    return path


@dataclass
class Lake:
    root: Path
    bronze: str
    target: str
    ledger: str
    make: Callable[..., Pipeline]


@pytest.fixture
def lake(
    tmp_path: Path, bronze: str, spark: Any, prefect_api: None, monkeypatch: pytest.MonkeyPatch, request: Any
) -> Lake:
    monkeypatch.setenv("BACKFILL_RESULT_STORAGE_PATH", str(tmp_path / "results"))
    base_name = re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)[:60]
    where = getattr(request, "param", "local")  # @pytest.mark.parametrize("lake", LAKES, indirect=True)
    if where == "s3":  # source, target, ledger, leases and the cache records all on the store
        root = f"s3a://lake/tests/{tmp_path.name}-{base_name}"
        bronze = request.getfixturevalue("s3_bronze")
        monkeypatch.setenv("BACKFILL_RESULT_STORAGE_PATH", f"{root}/results")
    else:
        root = str(tmp_path)
    target = f"{root}/silver/orders"

    def make(transform: Transform, version: str = "1", name: str = base_name, **kw: Any) -> Pipeline:
        kw.setdefault("source", TableRef(bronze))
        kw.setdefault("target", TableRef(target))
        kw.setdefault("partition_column", "order_date")
        return register(
            Pipeline(name=name, transform=transform, version=version, **kw),
            replace=True,
        )

    return Lake(tmp_path, bronze, target, f"{root}/silver/_backfill_progress", make)
