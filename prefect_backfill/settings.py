"""Settings, read at the boundary with pydantic: environment (``BACKFILL_*``), then
``[tool.prefect-backfill]`` in the working directory's pyproject.toml, then defaults.

Nothing else in the package reads the environment, so a test or a deployment changes behaviour by
setting variables, never by patching code.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
)

from prefect_backfill.errors import ConfigurationError

__all__ = ["BackfillSettings", "get_settings"]


class BackfillSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BACKFILL_",
        frozen=True,
        extra="ignore",
        pyproject_toml_table_header=("tool", "prefect-backfill"),
    )

    pipeline_modules: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Modules that register pipelines, imported on first lookup (comma-separated in env). "
        "None by default: the demo is registered by `backfill demo` and by this project's own pyproject.toml.",
    )
    cache_dir: Path = Field(Path(".cache"), description="Delta jars (Ivy) and Prefect cache records.")
    data_dir: Path = Field(Path(".data"), description="Where the demo lakehouse lives (<data_dir>/lake).")
    demo_lake: str | None = Field(
        None, description="The demo lakehouse elsewhere: a folder or an object-store prefix (s3a://bucket/lake)."
    )
    ledger_path: str | None = Field(
        None, description="Delta progress table; default: _backfill_progress beside the target table."
    )
    result_storage_path: str | None = Field(
        None,
        description="Where completed partitions' cache records persist: a folder, or an object-store prefix "
        "(s3a://bucket/backfill-results) shared by every machine. Default: <cache_dir>/results.",
    )
    result_storage_block: str | None = Field(
        None,
        description="A saved Prefect storage block slug (e.g. 's3-bucket/backfill-results') instead of a "
        "folder: shared storage, so a resume on another machine still hits the cache.",
    )
    max_partitions: int = Field(400, ge=1, description="Safety cap: larger ranges need --yes / yes=True.")
    max_workers: int = Field(32, ge=1, description="Thread pool size of the flow; max_concurrency <= this.")
    pipeline_cap: int = Field(
        4,
        ge=1,
        description="Chunks (Spark jobs) in flight across all runs on one target, when its pipeline's limit "
        "backfill-<pipeline> is created on first use (deployments/setup.py sets it explicitly).",
    )
    coordinate: bool = Field(
        True,
        description="Shared cap and partition claims across runs (run leases beside the ledger). Turn "
        "off only where a pipeline never has two runs at once (benchmarks measure the cap's cost this way).",
    )
    chunk_min_share_mb: float = Field(
        32.0,
        ge=0,
        description="Source MiB each slot's share of a run must keep before the run is split into one chunk per "
        "slot: below it, a second chunk adds a job and a commit and buys no parallelism (0: always split).",
    )
    canary_poll_seconds: float = Field(
        5.0, gt=0, description="How often a run paused at the canary gate checks for the answer from the UI."
    )
    state_poll_seconds: float = Field(
        15.0,
        gt=0,
        description="How often a run on a Prefect server reads its own flow run's state: one that Prefect ended "
        "(Crashed, Cancelled) stops taking chunks.",
    )
    window_grace: float = Field(
        300.0,
        ge=0,
        description="Seconds after a night window's end that chunks in flight may take to finish; then their "
        "Spark work is cancelled and their partitions go back to PENDING (nothing half-written).",
    )
    wait_timeout: float = Field(
        600.0,
        ge=0,
        description="Seconds a run waits for a slot of the pipeline's cap or for the claims lock, saying who "
        "holds them, before it gives up (exit 4).",
    )

    s3_endpoint: str | None = Field(
        None,
        description="S3-compatible endpoint URL for s3:// and s3a:// tables and ledgers (http://127.0.0.1:7070, "
        "https://<account>.r2.cloudflarestorage.com); unset: AWS S3. Credentials come from the standard AWS "
        "environment or profile, never from here.",
    )
    s3_region: str | None = Field(None, description="Region of the store; unset: AWS_REGION or the profile's.")
    s3_path_style: bool = Field(
        False, description="Path-style addressing (http://host/bucket/key): most S3-compatible servers need it."
    )
    s3_connector: bool = Field(
        False,
        description="Start Spark with the Hadoop S3A connector even before an s3a:// table asks for it (a session "
        "that serves several pipelines). Set automatically by any s3:// or s3a:// source or target.",
    )
    s3_retry_seconds: float = Field(
        30.0,
        gt=0,
        description="How long a request to the object store is retried (with backoff) before it fails: throttling "
        "and a store that went away are waited out this long, then the partition fails (and a rerun resumes).",
    )
    s3_single_driver: bool = Field(
        False,
        description="Use Delta's own S3 log store, which assumes ONE Spark driver per table, instead of the "
        "package's conditional-put log store (If-None-Match on every commit file). Only for stores without "
        "conditional writes: two drivers on one table can then lose a commit.",
    )

    engine: str = Field(
        "spark",
        description="'spark' (Spark + Delta) or 'package.module:factory' returning an Engine (benchmarks use a "
        "no-op one).",
    )
    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description="'thread': a thread pool on this process's Spark driver. 'dask': a Dask cluster "
        "(dask_address, or a local cluster of dask_workers processes), each worker with its own Spark session.",
    )
    dask_address: str | None = Field(None, description="Existing Dask scheduler, e.g. tcp://10.0.0.5:8786.")
    dask_workers: int = Field(2, ge=1, description="Worker processes of the local Dask cluster (no dask_address).")
    dask_threads_per_worker: int = Field(2, ge=1, description="Threads per worker process of the local Dask cluster.")

    spark_master: str = Field("local[*]", description="local[*], spark://host:7077, yarn, k8s://…")
    spark_remote: str | None = Field(
        None, description="Spark Connect URL (sc://host:15002): use a remote Spark instead of starting a driver."
    )
    spark_pool: str = Field("backfill", description="FAIR scheduler pool of backfill jobs (classic Spark).")
    spark_app_name: str = "prefect-backfill"
    spark_driver_memory: str = "2g"
    spark_shuffle_partitions: int = 4
    spark_ui: bool = False
    spark_class_archive: bool = Field(
        True,
        description="Start the Spark driver from the class archive `backfill setup` writes (faster starts).",
    )
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark conf (JSON in env).")
    metastore_uri: str | None = Field(
        None,
        description="A Hive metastore's Thrift address (thrift://host:9083) where catalog-named tables "
        "(silver.orders) live: Spark's session catalog uses it, and the package asks it where a table's files "
        "are, so commit versions, digests, audit, undo and `status` work on catalog tables without Spark.",
    )

    @field_validator("pipeline_modules", mode="before")
    @classmethod
    def _split_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            modules = [part.strip() for part in value.split(",") if part.strip()]
            if value.strip() and not modules:  # " , ": meant to name modules, names none
                raise ValueError(f"{value!r} names no module: give comma-separated module names, e.g. my.pipelines")
            return modules
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, PyprojectTomlConfigSettingsSource(settings_cls))

    @field_validator("s3_endpoint", "s3_region", "metastore_uri", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("s3_endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an endpoint URL: give http://host:port or https://host")
        return value.rstrip("/") if value else value

    @field_validator("metastore_uri")
    @classmethod
    def _thrift_uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.removeprefix("thrift://").partition(":")
        if not value.startswith("thrift://") or not host or not port.isdigit():
            raise ValueError(f"{value!r} is not a metastore address: give thrift://host:9083")
        return value

    @property
    def ivy_dir(self) -> Path:
        return (self.cache_dir / "ivy").resolve()

    @property
    def result_storage(self) -> Path | str:
        """What Prefect's ``result_storage=`` takes: a folder, or a saved block's slug."""
        if self.result_storage_block:
            return self.result_storage_block
        if self.result_storage_path and "://" in self.result_storage_path:  # an object store: kept as a URI
            return self.result_storage_path.rstrip("/")
        return Path(self.result_storage_path or self.cache_dir / "results").resolve()


def get_settings() -> BackfillSettings:
    """Settings for the current environment and working directory.

    Cached per distinct ``BACKFILL_*`` environment and folder: building them reads pyproject.toml
    (~1.5 ms), which a batch of thousands of trivial partitions would otherwise pay per partition,
    while a test or a caller that changes a variable still gets settings that reflect it.
    """
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("BACKFILL_")))
    return _settings_for(os.getcwd(), env)


@functools.lru_cache(maxsize=32)
def _settings_for(cwd: str, env: tuple[tuple[str, str], ...]) -> BackfillSettings:
    try:
        return BackfillSettings()
    except ValidationError as exc:  # one line naming the variable, exit 2, like every usage error
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ConfigurationError(
            f"BACKFILL_{field.upper()} (or {field} under [tool.prefect-backfill]): {message}"
        ) from None
