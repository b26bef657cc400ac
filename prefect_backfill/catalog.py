"""Where a catalog table's files are, asked of the metastore itself (no Spark).

A pipeline may name its tables by catalog name (``silver.orders``). Spark reads and writes them by that
name; everything the package reads without Spark (commit versions from the Delta log, digests, the audit,
undo's plan, ``backfill status``) needs the table's storage location. With ``BACKFILL_METASTORE_URI`` set,
each process asks the metastore once, over its Thrift API (the Hive metastore's, which Spark's session
catalog, AWS Glue's Hive-compatible endpoint and Databricks' legacy metastore speak), and carries the answer
in the pipeline's :class:`~prefect_backfill.pipeline.TableRef` (``storage``).

Without that setting a catalog table stays unresolved outside Spark: a run learns its target's location
from Spark once the target exists (``TableInfo.location``), and the tools that need no Spark say what they
cannot verify, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from prefect_backfill.errors import CatalogUnavailableError, one_line
from prefect_backfill.pipeline import Pipeline, TableRef
from prefect_backfill.settings import BackfillSettings

__all__ = ["catalog_conf", "catalog_storage", "resolved", "split_name", "storage_of", "table_storage", "with_storage"]

#: Spark's name for its session catalog: ``spark_catalog.silver.orders`` is ``silver.orders`` in the metastore.
SESSION_CATALOG = "spark_catalog"
_TIMEOUT_MS = 10_000


def catalog_conf(settings: BackfillSettings) -> dict[str, str]:
    """The Spark conf that makes catalog names resolve in the metastore of ``settings`` (Spark's Hive session
    catalog), or nothing when none is set."""
    if not settings.metastore_uri:
        return {}
    return {"spark.sql.catalogImplementation": "hive", "spark.hadoop.hive.metastore.uris": settings.metastore_uri}


def split_name(name: str) -> tuple[str, str] | None:
    """The metastore's (database, table) of a catalog name; None for a name in another catalog
    (``main.silver.orders`` of a Unity catalog), which this metastore does not hold. Lower-cased, as the
    Hive metastore stores them."""
    parts = name.lower().split(".")
    if len(parts) == 3 and parts[0] == SESSION_CATALOG:
        parts = parts[1:]
    if len(parts) == 1:
        return "default", parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    return None


def storage_of(parameters: Mapping[str, str], serde_parameters: Mapping[str, str], location: str | None) -> str | None:
    """A Delta table's storage from its metastore entry, or None if the entry is not a Delta table.

    Spark keeps a data source table's real path in its storage parameters (``path``); the entry's own
    location can be a placeholder for tables Hive itself cannot read. ``file:`` URIs become plain paths
    (what the rest of the package and delta-rs use for local tables)."""
    if parameters.get("spark.sql.sources.provider", "").lower() != "delta":
        return None
    where = serde_parameters.get("path") or location
    if not where:
        return None
    if where.startswith("file:"):
        where = "/" + where.removeprefix("file:").lstrip("/")
    return where.rstrip("/")


def table_storage(uri: str, database: str, table: str) -> str | None:
    """The storage of ``database.table`` in the metastore at ``uri``; None if there is no such table (a
    target a first run creates) or it is not a Delta table. A metastore that cannot be reached is an error
    naming the setting: guessing would split one table's history in two."""
    from pymetastore.hive_metastore import ThriftHiveMetastore
    from pymetastore.hive_metastore.ttypes import NoSuchObjectException
    from thrift.protocol.TBinaryProtocol import TBinaryProtocol
    from thrift.transport import TSocket, TTransport

    # thrift logs a refused connection itself, in its own words; the error below says it once, in ours.
    logging.getLogger("thrift").setLevel(logging.CRITICAL)
    host, _, port = uri.removeprefix("thrift://").partition(":")
    sock = TSocket.TSocket(host, int(port))
    sock.setTimeout(_TIMEOUT_MS)
    transport = TTransport.TBufferedTransport(sock)
    try:
        transport.open()
        try:
            entry: Any = ThriftHiveMetastore.Client(TBinaryProtocol(transport)).get_table(database, table)
        finally:
            transport.close()
    except NoSuchObjectException:
        return None
    except Exception as exc:
        raise CatalogUnavailableError(
            f"the metastore at {uri} did not say where {database}.{table} is ({one_line(exc, 160)}): check "
            "BACKFILL_METASTORE_URI and that the metastore is running"
        ) from None
    sd = entry.sd
    serde = (sd.serdeInfo.parameters if sd is not None and sd.serdeInfo is not None else None) or {}
    return storage_of(entry.parameters or {}, serde, sd.location if sd is not None else None)


def catalog_storage(table: TableRef, settings: BackfillSettings) -> str | None:
    """``table``'s storage: a path table's own path; a catalog table's from the metastore, if one is set."""
    if table.is_path:
        return table.location
    if not settings.metastore_uri or (name := split_name(table.location)) is None:
        return None
    return table_storage(settings.metastore_uri, *name)


def resolved(pipeline: Pipeline, settings: BackfillSettings) -> Pipeline:
    """``pipeline`` with its catalog tables' storage filled in from the metastore (unchanged when both
    are paths or no metastore is set): one question per table, asked once per process and step."""
    if (pipeline.source.is_path and pipeline.target.is_path) or not settings.metastore_uri:
        return pipeline
    return with_storage(
        pipeline, catalog_storage(pipeline.source, settings), catalog_storage(pipeline.target, settings)
    )


def with_storage(pipeline: Pipeline, source: str | None, target: str | None) -> Pipeline:
    """``pipeline`` with these storage locations for its catalog tables (None keeps what it has)."""
    new_source = pipeline.source.stored_at(source or pipeline.source.storage)
    new_target = pipeline.target.stored_at(target or pipeline.target.storage)
    if new_source.path == pipeline.source.path and new_target.path == pipeline.target.path:
        return pipeline
    return replace(pipeline, source=new_source, target=new_target)
