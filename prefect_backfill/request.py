"""What a caller asks of a backfill: one value, validated at the boundary.

The CLI (``run``, ``plan``), the flow (deployment runs) and the resume command all speak it, so they
refuse bad input with the same one-line messages before anything is written. Light on purpose (pydantic
and the pure planning values only): the CLI builds its options from it at start-up.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prefect_backfill.cascade import Policy
from prefect_backfill.errors import InvalidRequestError, PipelineDefinitionError
from prefect_backfill.limits import MAX_CANARY, MAX_CHUNK_PARTITIONS, MAX_RETRIES
from prefect_backfill.planning import Reprocess

__all__ = ["BackfillRequest"]


def _param(default: Any, flag: str, help: str, **bounds: Any) -> Any:
    """One run parameter: its default, its ``backfill run`` flag, its help (the CLI's ``--help``, the
    flow's parameter docs and the deployment form in the Prefect UI all show it) and its bounds."""
    return Field(default, description=help, json_schema_extra={"flag": flag}, **bounds)


class BackfillRequest(BaseModel):
    """Everything a caller can ask for, in one definition: each field's type, default, bounds and help
    are what the CLI's options, the flow's parameters, prefect.yaml's parameter docs, the README's
    synopsis and the resume command are made from or checked against (tests/unit/test_request_one_value.py).
    Adding a run parameter is a field here plus its CLI rendering, if it is not a plain value.
    JSON-serialisable, so it maps 1:1 onto deployment parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipeline: str = Field(description="Registered pipeline name (`backfill pipelines` lists them).")
    start: str | None = _param(
        None, "--start", "First partition, inclusive (YYYY-MM-DD; 2024-01-03T05 hourly; 2024-01 monthly)."
    )
    end: str | None = _param(None, "--end", "Last partition, inclusive.")
    partitions: tuple[str, ...] = _param(
        (), "--partitions", "Explicit partition keys instead of start/end (on the CLI: comma-separated)."
    )
    reprocess: Reprocess = _param(
        Reprocess.MISSING,
        "--reprocess",
        "missing (default: not complete for this version) | failed (latest attempt failed) | all.",
    )
    max_concurrency: int = _param(2, "--max-concurrency", "Chunks (Spark jobs) in flight at once.", ge=1)
    retries: int = _param(
        2, "--retries", "Retries per partition for transient errors (backoff with jitter).", ge=0, le=MAX_RETRIES
    )
    retry_delay_seconds: float = _param(
        5.0,
        "--retry-delay",
        "Seconds before a partition's first retry; doubles each retry.",
        ge=0,
        allow_inf_nan=False,
    )
    exclude: tuple[str, ...] = _param((), "--exclude", "Partition keys to leave out (on the CLI: repeat the flag).")
    newest_first: bool = _param(False, "--newest-first", "Run the newest partitions first.")
    # Execution granularity: chunks of consecutive partitions, one Spark job and one Delta commit each,
    # up to chunk_mb of source data and chunk_partitions partitions (1: one partition per job).
    chunk_mb: float = _param(
        1024.0,
        "--chunk-mb",
        "Source megabytes per chunk: consecutive partitions share one Spark job and one Delta commit up to "
        "this size; each is still recorded, cached and failed on its own.",
        gt=0,
        allow_inf_nan=False,
    )
    chunk_partitions: int = _param(
        400,
        "--chunk-partitions",
        "Partitions per chunk at most (1: one partition per job).",
        ge=1,
        le=MAX_CHUNK_PARTITIONS,
    )
    yes: bool = _param(False, "--yes", "Confirm a range above the safety cap (BACKFILL_MAX_PARTITIONS).")
    window_end: str | None = _param(
        None,
        "--window-end",
        "Start no chunk after this time of day (06:00, in timezone) or instant (ISO timestamp); running ones "
        "may finish within BACKFILL_WINDOW_GRACE; the rest stays PENDING for the next run.",
    )
    timezone: str = _param("UTC", "--timezone", "IANA timezone of window_end.")
    # The canary gate (prefect_backfill.canary): run these partitions first, publish their diff, wait for
    # an approval (Prefect UI form, or the CLI's prompt) before the rest; approve=True does not wait.
    canary: int = _param(
        0,
        "--canary",
        "Write N partitions first (first, middle, last…), publish their diff and wait for approval before the "
        "rest; 0: no canary gate.",
        ge=0,
        le=MAX_CANARY,
    )
    canary_partitions: tuple[str, ...] = _param(
        (), "--canary-partitions", "Explicit canary partition keys instead of N (on the CLI: comma-separated)."
    )
    approve: bool = _param(
        False,
        "--approve",
        "Do not wait at the canary gate (unattended runs): the canaries still run first and their diff is published.",
    )
    canary_timeout_s: int = _param(
        3600, "--canary-timeout", "Seconds to wait for an answer at the canary gate; none stops the run.", ge=1
    )
    cascade: Policy | None = _param(
        None,
        "--cascade",
        "none | mark: what this run does to downstream pipelines' partitions that read what it writes (mark: "
        "STALE in their ledger); default: each upstream declaration's own policy.",
    )

    @classmethod
    def flags(cls) -> dict[str, str]:
        """The ``backfill run`` flag of each run parameter: the resume command, and errors named as typed."""
        return {name: cls.flag(name) for name in cls.model_fields if name != "pipeline"}

    @classmethod
    def flag(cls, name: str) -> str:
        extra = cls.model_fields[name].json_schema_extra
        assert isinstance(extra, dict), name  # every run parameter is made by _param
        return str(extra["flag"])

    @classmethod
    def args_doc(cls, indent: str = "") -> str:
        """Every field's help as a Google-style ``Args:`` section (what Prefect reads a flow's parameter
        descriptions from)."""
        lines = [f"{indent}Args:"]
        for name, info in cls.model_fields.items():
            lines.append(f"{indent}    {name}: {info.description}")
        return "\n".join(lines) + "\n"

    @field_validator("reprocess", mode="before")
    @classmethod
    def _reprocess(cls, value: object) -> Reprocess:
        return value if isinstance(value, Reprocess) else Reprocess.parse(str(value))

    @field_validator("cascade", mode="before")
    @classmethod
    def _cascade(cls, value: object) -> Policy | None:
        if value is None or value == "":
            return None
        try:
            return Policy.parse(value, "--cascade (cascade)")
        except PipelineDefinitionError as exc:  # a usage error here, like --reprocess's: the same one line
            raise InvalidRequestError(str(exc)) from None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date_text(cls, value: object) -> str | None:
        if value is None or value == "":
            return None
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    @model_validator(mode="after")
    def _range_or_list(self) -> BackfillRequest:
        if self.partitions and (self.start or self.end):
            raise InvalidRequestError("give either --start/--end or --partitions, not both")
        if not self.partitions and not (self.start and self.end):
            raise InvalidRequestError("give --start and --end (inclusive), or an explicit --partitions list")
        return self

    @property
    def describe_range(self) -> str:
        if self.partitions:
            shown = ",".join(self.partitions[:3]) + (f",… ({len(self.partitions)})" if len(self.partitions) > 3 else "")
            return shown
        return f"{self.start}..{self.end}"

    def cli_args(self) -> list[str]:
        """The ``backfill run`` arguments that make exactly this request: the pipeline, then a flag for
        every field that differs from its default, in field order (so the text is stable). The CLI
        parses them back into an equal request (tested); a field without a flag here is a bug."""
        args = [self.pipeline]
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if name == "pipeline" or value == info.default:
                continue
            flag = self.flag(name)
            if isinstance(value, bool):
                args.append(flag)
            elif name in ("partitions", "canary_partitions"):
                args += [flag, ",".join(value)]
            elif isinstance(value, tuple):
                for item in value:
                    args += [flag, str(item)]
            elif isinstance(value, Reprocess):
                args += [flag, value.value]
            else:
                args += [flag, repr(value) if isinstance(value, float) else str(value)]
        return args

    @classmethod
    def build(cls, **params: object) -> BackfillRequest:
        """Validate ``params`` into a request, turning pydantic's report into one line."""
        try:
            return cls(**params)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "request"
            if isinstance(first.get("ctx", {}).get("error"), InvalidRequestError):
                raise first["ctx"]["error"] from None
            # Named both ways: the flag for the CLI, the parameter for a deployment run.
            flags = cls.flags()
            named = f"{flags[where]} ({where})" if where in flags else where
            raise InvalidRequestError(f"{named}: {first['msg']}") from None
