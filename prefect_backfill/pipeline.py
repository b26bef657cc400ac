"""What a pipeline is: source, target, partition column, grain, transform, version.

Definitions are values (frozen dataclasses): they are validated once, when they are made, so a bad
name fails at import time with one clear line instead of half-way through a six-month backfill.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from prefect_backfill.cascade import Policy, Upstream
from prefect_backfill.checks import Check, Custom, Expect, NotNull, RowRatio, Unique
from prefect_backfill.errors import PipelineDefinitionError
from prefect_backfill.partitions import Grain

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["Pipeline", "TableRef", "Transform", "check_identifier", "transform_source_hash"]

Transform = Callable[["DataFrame"], "DataFrame"]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PIPELINE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def check_identifier(value: str, what: str) -> str:
    """Accept only plain SQL identifiers, so that no user string is ever spliced into SQL."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise PipelineDefinitionError(
            f"{what} {value!r} is not a plain identifier: use letters, digits and underscores, "
            "not starting with a digit"
        )
    return value


@dataclass(frozen=True, slots=True)
class TableRef:
    """A Delta table, either by storage path (``/lake/silver/orders``, ``s3a://…``) or by catalog name
    (``silver.orders``). Anything with a ``/`` is a path; anything else must be a dotted identifier.

    ``storage`` is where a catalog table's files are, once a process has asked its catalog
    (:mod:`prefect_backfill.catalog`): what delta-rs reads for commit versions, digests, audit and undo,
    while Spark keeps reading and writing the table by its name. It is not part of the table's identity."""

    location: str
    storage: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        loc = self.location.strip() if isinstance(self.location, str) else ""
        if not loc:
            raise PipelineDefinitionError("table location is empty: give a Delta path or a catalog table name")
        if not self.is_path:
            for part in loc.split("."):
                check_identifier(part, "table name part")
        object.__setattr__(self, "location", loc)

    @property
    def is_path(self) -> bool:
        return "/" in self.location

    @property
    def path(self) -> str | None:
        """Where the table's Delta log is: the path itself, a catalog table's resolved storage, or None
        (a catalog table not resolved: only Spark can read it)."""
        return self.location if self.is_path else self.storage

    def stored_at(self, storage: str | None) -> TableRef:
        """This catalog table, its files at ``storage`` (a path table is its own storage)."""
        return self if self.is_path else TableRef(self.location, storage)

    def __str__(self) -> str:
        return self.location


def transform_source_hash(transform: Callable[..., Any]) -> str:
    """Hash of the transform's own code, blind to comments and formatting.

    Prefect's TASK_SOURCE only hashes the task function, never the transform it calls, so the cache
    key carries this hash next to the explicit version: editing the transform re-runs partitions even
    if nobody bumped the version, while reformatting it does not.
    """
    try:
        source = textwrap.dedent(inspect.getsource(transform))
        try:
            tree = ast.parse(source)
            head = tree.body[0] if tree.body else None
            if isinstance(head, ast.FunctionDef | ast.AsyncFunctionDef):
                head.name = "_"  # renaming the function does not change what it computes
            normalized = ast.dump(tree, annotate_fields=False)
        except SyntaxError:  # a lambda inside an expression: fall back to the raw text
            normalized = source
    except (OSError, TypeError):  # built-ins, C functions, REPL definitions
        normalized = getattr(transform, "__qualname__", repr(transform))
    return hashlib.sha256(normalized.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Pipeline:
    """A partitioned pipeline: each partition of ``target`` is ``transform`` of the same partition of ``source``.

    ``version`` is the transform's explicit version (bump it when the logic changes, as with Dagster
    code versions). ``allow_empty`` says whether an empty source partition may empty the target one;
    by default it fails the partition, because an empty source is more often late data than truth.
    ``allow_empty_output`` likewise for a transform that returns no rows from a non-empty source
    partition (a filter with a bug, by default: the partition fails and keeps its old rows).

    ``partition_local`` says the transform computes each partition's rows from that partition's rows
    alone (row by row, or aggregations grouped by the partition column), so several partitions can be
    transformed together in one chunk and give the same rows as one by one. Set it to False for a
    transform that looks across partitions (a window or a dedup over all input, a global limit): each
    partition then runs in its own job.

    ``cache_output`` keeps each chunk's output in Spark's cache between the pass that counts and checks
    it and the write (True), or lets the write compute it again (False). Unset, the package decides per
    chunk (:mod:`prefect_backfill.engine.output_reuse`): computed again (the count pass then reads only
    the columns it counts; caching wide rows cost more time and memory than computing them twice,
    docs/real-size-benchmarks.md), cached where the transform runs Python UDFs, is not deterministic, or
    custom checks or a key's diff read it again. Set it when you know better (an expensive join, say);
    what is written is the same either way, and the ledger records the rows the commit wrote.

    ``widen_types`` lets a new version widen a column's type in place (``int`` to ``bigint``, …) through
    Delta's type widening, which the target then gets as a table feature: a protocol upgrade that readers
    without it cannot read (delta-rs 1.x reads the log but not the data; Spark before Delta 4.0). Off,
    a widening is refused before anything is written unless the target has type widening on already
    (:mod:`prefect_backfill.schema_change`).

    ``upstream`` declares the pipelines whose targets this one reads (:class:`~prefect_backfill.cascade.Upstream`,
    each with a partition mapping: identity, roll-up, look-back or custom); ``cascade`` is what an upstream run
    does to the partitions of this one that depend on what it completed, unless the edge says otherwise:
    ``mark`` (default: they become STALE in this pipeline's ledger, and its next default run takes them) or
    ``none`` (:mod:`prefect_backfill.cascade`).

    ``cluster_by`` creates a missing target liquid-clustered by those columns instead of partitioned by
    the partition column (Delta's recommended layout for new tables). An existing target may be
    partitioned by the partition column, clustered, or not partitioned at all: on the latter two each
    chunk replaces its rows by the partition column, and its commits go one at a time
    (:mod:`prefect_backfill.engine.committer`).
    """

    name: str
    source: TableRef
    target: TableRef
    partition_column: str
    transform: Transform
    version: str
    grain: Grain = Grain.DAY
    description: str = ""
    allow_empty: bool = False
    allow_empty_output: bool = False
    partition_local: bool = True
    tags: tuple[str, ...] = field(default=())
    checks: tuple[Check, ...] = field(default=())
    key: tuple[str, ...] = field(default=())
    diff: bool = True
    diff_columns: tuple[str, ...] | None = None
    cache_output: bool | None = None
    widen_types: bool = False
    cluster_by: tuple[str, ...] = field(default=())
    upstream: tuple[Upstream, ...] = field(default=())
    cascade: Policy = Policy.MARK

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PIPELINE_NAME.match(self.name):
            raise PipelineDefinitionError(
                f"pipeline name {self.name!r} is invalid: use letters, digits, '_', '-' or '.'"
            )
        for attr in ("source", "target"):
            value = getattr(self, attr)
            if isinstance(value, str):
                object.__setattr__(self, attr, TableRef(value))
            elif not isinstance(value, TableRef):
                raise PipelineDefinitionError(f"pipeline {self.name}: {attr} must be a path or a table name")
        check_identifier(self.partition_column, f"pipeline {self.name}: partition column")
        if not callable(self.transform):
            raise PipelineDefinitionError(f"pipeline {self.name}: transform must be a function DataFrame -> DataFrame")
        if not str(self.version).strip():
            raise PipelineDefinitionError(f"pipeline {self.name}: version is empty; give the transform a version")
        object.__setattr__(self, "version", str(self.version))
        try:
            object.__setattr__(self, "grain", Grain(self.grain))
        except ValueError:
            raise PipelineDefinitionError(
                f"pipeline {self.name}: grain {self.grain!r} is not one of hour, day, month"
            ) from None
        object.__setattr__(self, "checks", tuple(self.checks))
        object.__setattr__(
            self, "key", tuple(check_identifier(c, f"pipeline {self.name}: key column") for c in self.key)
        )
        clustered = (self.cluster_by,) if isinstance(self.cluster_by, str) else tuple(self.cluster_by)
        object.__setattr__(
            self,
            "cluster_by",
            tuple(check_identifier(c, f"pipeline {self.name}: cluster_by column") for c in clustered),
        )
        if self.diff_columns is not None:
            object.__setattr__(
                self,
                "diff_columns",
                tuple(check_identifier(c, f"pipeline {self.name}: diff column") for c in self.diff_columns),
            )
        for check in self.checks:
            if not isinstance(check, RowRatio | NotNull | Unique | Expect | Custom):
                raise PipelineDefinitionError(
                    f"pipeline {self.name}: check {check!r} is not a check: use RowRatio, NotNull, Unique, Expect or "
                    "Custom from prefect_backfill.checks"
                )
        if self.source == self.target:
            raise PipelineDefinitionError(f"pipeline {self.name}: source and target are the same table")
        upstream = (self.upstream,) if isinstance(self.upstream, Upstream) else tuple(self.upstream)
        for edge in upstream:
            if not isinstance(edge, Upstream):
                raise PipelineDefinitionError(
                    f"pipeline {self.name}: upstream {edge!r} is not an Upstream(pipeline, mapping, policy)"
                )
            if edge.pipeline == self.name:
                raise PipelineDefinitionError(f"pipeline {self.name} names itself as its upstream: remove it")
        names = [edge.pipeline for edge in upstream]
        if len(set(names)) != len(names):
            raise PipelineDefinitionError(f"pipeline {self.name}: an upstream is declared twice ({', '.join(names)})")
        object.__setattr__(self, "upstream", upstream)
        object.__setattr__(self, "cascade", Policy.parse(self.cascade, f"pipeline {self.name}"))

    @cached_property
    def fingerprint(self) -> str:
        """Explicit version plus the transform's code hash: what "complete for this version" means."""
        return f"{self.version}:{transform_source_hash(self.transform)}"
