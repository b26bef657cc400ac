"""Cache records on an object store: a Prefect storage block over the package's own S3 settings.

``BACKFILL_RESULT_STORAGE_PATH=s3a://bucket/prefix`` puts the records of completed partitions beside the
lake, so a resume on another machine (another worker of the pool, a Dask worker) still finds them. The
block reads and writes through pyarrow's S3 filesystem with the ``BACKFILL_S3_*`` settings and the
standard AWS credentials, the same way to the store as the ledger's: no second set of settings (as
prefect-aws's ``S3Bucket`` would need) and no extra dependency tree (boto3 or s3fs). A saved block of any
kind still works through ``BACKFILL_RESULT_STORAGE_BLOCK``.
"""

from __future__ import annotations

from prefect.filesystems import WritableFileSystem

from prefect_backfill.storage import arrow_filesystem

__all__ = ["ObjectStoreResults"]


class ObjectStoreResults(WritableFileSystem):
    """Prefect result storage under ``basepath`` (``s3a://bucket/prefix`` or ``s3://…``)."""

    _block_type_name = "Backfill Object Store Results"
    basepath: str

    def _resolve_path(self, path: str) -> str:
        """The URI of ``path``; a URI already (Prefect resolves a key once, then passes it back) as it is."""
        if "://" in path:
            return path
        return f"{self.basepath.rstrip('/')}/{path.lstrip('/')}"

    # Prefect calls blocks' methods both ways: ``aread_path`` awaited, ``read_path(..., _sync=True)`` directly.
    async def aread_path(self, path: str) -> bytes:
        return self.read_path(path)

    async def awrite_path(self, path: str, content: bytes) -> None:
        self.write_path(path, content)

    def read_path(self, path: str, **_: object) -> bytes:  # type: ignore[override]
        filesystem, key = arrow_filesystem(self._resolve_path(path))
        with filesystem.open_input_stream(key) as stream:
            return bytes(stream.read())

    def write_path(self, path: str, content: bytes, **_: object) -> None:  # type: ignore[override]
        filesystem, key = arrow_filesystem(self._resolve_path(path))
        with filesystem.open_output_stream(key) as stream:  # one PUT: a reader sees the old record or the new
            stream.write(content)
