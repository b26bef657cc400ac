"""Where a table or a file lives, and how each library reaches it: the local disk or an S3-compatible store.

One set of settings (``BACKFILL_S3_ENDPOINT``, ``BACKFILL_S3_REGION``, ``BACKFILL_S3_PATH_STYLE``) reaches
all three readers and writers of the package: delta-rs (ledger, leases, claims, snapshots, commit
versions) as storage options, pyarrow (the ledger's and leases' data files, Delta log files) as a
filesystem, and Spark (sources and targets) as Hadoop S3A configuration. ``s3://`` and ``s3a://`` name the
same objects: Spark's convention is ``s3a://``, delta-rs and pyarrow take either.

Credentials are never passed here: every library reads them from the standard AWS environment
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``) or profile (``AWS_PROFILE``) itself,
so no option, conf, log line, artifact or error message of the package can carry one.

Commits on a store shared by several writers rely on conditional writes (``If-None-Match: *``): delta-rs
is told to use them (``conditional_put=etag``; AWS S3 since 2024, R2, MinIO and versitygw have them), and
Spark uses the package's conditional-put Delta log store (:mod:`prefect_backfill.engine.log_store`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from prefect_backfill.settings import BackfillSettings, get_settings

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem

__all__ = [
    "OBJECT_STORE_SCHEMES",
    "arrow_filesystem",
    "delta_options",
    "files_missing",
    "on_object_store",
    "read_text",
    "s3a_conf",
]

OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a"})


def _scheme(location: str) -> str:
    return location.split("://", 1)[0].lower() if "://" in location else ""


def on_object_store(location: str) -> bool:
    """Whether ``location`` (a table path or a file URI) is on an S3-compatible store."""
    return _scheme(location) in OBJECT_STORE_SCHEMES


def delta_options(location: str, settings: BackfillSettings | None = None) -> dict[str, str] | None:
    """delta-rs storage options for ``location``: None on the local disk (delta-rs needs none there)."""
    if not on_object_store(location):
        return None
    settings = settings or get_settings()
    options = {
        "conditional_put": "etag",  # commits are put-if-absent: safe with several writers
        # Bounded retries with backoff (delta-rs's default waits 180 s for a store that went away).
        "retry_timeout": f"{int(settings.s3_retry_seconds)}s",
        "max_retries": "10",
    }
    if settings.s3_endpoint:
        options["AWS_ENDPOINT_URL"] = settings.s3_endpoint
        if settings.s3_endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if settings.s3_region:
        options["AWS_REGION"] = settings.s3_region
    if settings.s3_path_style:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
    return options


def s3a_conf(settings: BackfillSettings) -> dict[str, str]:
    """Spark's Hadoop S3A configuration from the same settings (``s3://`` is served by S3A too)."""
    # S3A backs off exponentially from 500 ms: n retries wait about 0.5 * (2**n - 1) s in all.
    retry_limit = max(1, int(settings.s3_retry_seconds * 2 + 1).bit_length() - 1)
    conf = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # Bounded retries: the SDK's own attempts, then S3A's exponential backoff, about s3_retry_seconds.
        "spark.hadoop.fs.s3a.attempts.maximum": "1",
        "spark.hadoop.fs.s3a.retry.limit": str(retry_limit),
        "spark.hadoop.fs.s3a.retry.interval": "500ms",
        "spark.hadoop.fs.s3a.retry.throttle.limit": "20",
        "spark.hadoop.fs.s3a.connection.establish.timeout": "5s",
        # Commit files are created with If-None-Match (the package's log store asks for it per file).
        "spark.hadoop.fs.s3a.create.conditional.enabled": "true",
    }
    if settings.s3_endpoint:
        parts = urlsplit(settings.s3_endpoint)
        conf["spark.hadoop.fs.s3a.endpoint"] = settings.s3_endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(parts.scheme != "http").lower()
    if settings.s3_region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = settings.s3_region
    if settings.s3_path_style:
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    return conf


def arrow_filesystem(location: str, settings: BackfillSettings | None = None) -> tuple[FileSystem, str]:
    """A pyarrow filesystem for ``location`` and the path of ``location`` on it."""
    from pyarrow import fs

    if not on_object_store(location):
        return fs.LocalFileSystem(), location.removeprefix("file://")
    settings = settings or get_settings()
    filesystem = _s3_filesystem(settings.s3_endpoint, settings.s3_region, settings.s3_path_style)
    return filesystem, location.split("://", 1)[1]


@functools.lru_cache(maxsize=8)
def _s3_filesystem(endpoint: str | None, region: str | None, path_style: bool) -> FileSystem:
    """One client per store, not one per file read (a commit search reads up to hundreds of log files)."""
    from pyarrow import fs

    options: dict[str, object] = {}
    if endpoint:
        parts = urlsplit(endpoint)
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "https"
    if region:
        options["region"] = region
    if path_style:
        options["force_virtual_addressing"] = False
    return fs.S3FileSystem(**options)


def arrow_paths(uris: Sequence[str]) -> tuple[FileSystem | None, list[str]]:
    """The filesystem and paths pyarrow needs to read ``uris`` (files of one table: one filesystem)."""
    if not uris:
        return None, []
    filesystem, _ = arrow_filesystem(uris[0])
    return filesystem, [arrow_filesystem_path(uri) for uri in uris]


def arrow_filesystem_path(uri: str) -> str:
    return uri.split("://", 1)[1] if on_object_store(uri) else uri.removeprefix("file://")


def read_text(uri: str) -> str | None:
    """The text of the file at ``uri``; None if there is no such file."""
    filesystem, path = arrow_filesystem(uri)
    try:
        with filesystem.open_input_stream(path) as stream:
            return bytes(stream.read()).decode("utf-8")
    except FileNotFoundError:  # pyarrow's S3 filesystem raises it for a missing key too
        return None


def files_missing(uris: Iterable[str]) -> int:
    """How many of ``uris`` do not exist (one listing call per store, not one request per file)."""
    from pyarrow import fs

    uris = list(uris)
    if not uris:
        return 0
    local = [u for u in uris if not on_object_store(u)]
    remote = [u for u in uris if on_object_store(u)]
    missing = 0
    for group in (local, remote):
        if group:
            filesystem, paths = arrow_paths(group)
            assert filesystem is not None
            infos = filesystem.get_file_info(paths)
            missing += sum(1 for info in infos if info.type == fs.FileType.NotFound)
    return missing
