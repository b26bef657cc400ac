"""Pipelines by name: users register their own in their own modules, listed in a setting.

``BACKFILL_PIPELINE_MODULES=my_company.pipelines`` (or ``pipeline_modules`` under
``[tool.prefect-backfill]`` in pyproject.toml) names modules that call :func:`register`; they are
imported on the first lookup, in every process that needs them (CLI, flow run, Dask worker).
"""

from __future__ import annotations

import difflib
import importlib
import threading

from prefect_backfill.cascade import Node, Upstream, check_edges
from prefect_backfill.errors import ConfigurationError, PipelineDefinitionError, UnknownPipelineError
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.settings import get_settings

__all__ = ["all_pipelines", "downstream_edges", "get_pipeline", "reads_from", "register"]

_pipelines: dict[str, Pipeline] = {}
_loaded: set[str] = set()
_lock = threading.Lock()


def _identity(pipeline: Pipeline) -> dict[str, str]:
    """What must agree between two registrations of one name: where it reads and writes, how it
    partitions, and what it computes (the transform's version and source)."""
    return {
        "source": str(pipeline.source),
        "target": str(pipeline.target),
        "partition column": pipeline.partition_column,
        "grain": pipeline.grain.value,
        "version": pipeline.fingerprint,
    }


def register(pipeline: Pipeline, *, replace: bool = False) -> Pipeline:
    """Make ``pipeline`` available by name. Registering the same name twice with a different
    definition (source, target, partition column, grain or transform version) is an error: two modules
    disagreeing about one pipeline is a bug worth stopping on, since the ledger and the cache are keyed
    by name. ``replace`` says it is meant (a notebook redefining its pipeline, a test)."""
    existing = _pipelines.get(pipeline.name)
    if not replace and existing is not None and existing != pipeline:
        old, new = _identity(existing), _identity(pipeline)
        differ = [f"{what} {old[what]} vs {new[what]}" for what in old if old[what] != new[what]]
        if differ:
            raise PipelineDefinitionError(
                f"pipeline {pipeline.name!r} is registered twice with different definitions "
                f"({'; '.join(differ)}): rename one of them, or pass replace=True if the second is meant"
            )
    if not replace:
        _refuse_a_second_writer(pipeline)
    before = _pipelines.get(pipeline.name)
    _pipelines[pipeline.name] = pipeline
    try:  # grains and cycles among what is registered so far; unknown names once every module is loaded
        check_edges(_nodes(), complete=False)
    except PipelineDefinitionError:
        if before is None:
            del _pipelines[pipeline.name]
        else:
            _pipelines[pipeline.name] = before
        raise
    return pipeline


def _nodes() -> dict[str, Node]:
    return {name: Node(p.grain, p.upstream) for name, p in _pipelines.items()}


def downstream_edges(name: str) -> list[tuple[Pipeline, Upstream]]:
    """The pipelines that read what ``name`` writes, each with its edge from ``name``."""
    _load_modules()
    return [
        (p, edge)
        for p in sorted(_pipelines.values(), key=lambda p: p.name)
        for edge in p.upstream
        if edge.pipeline == name
    ]


def reads_from(pipeline: Pipeline) -> tuple[Pipeline, Upstream] | None:
    """The upstream pipeline whose target ``pipeline`` reads as its source, with its edge (None: none
    declared): its mapping says which source partitions a chunk of ``pipeline`` reads."""
    _load_modules()
    for edge in pipeline.upstream:
        up = _pipelines.get(edge.pipeline)
        if up is not None and up.target == pipeline.source:
            return up, edge
    return None


def _refuse_a_second_writer(pipeline: Pipeline) -> None:
    """One target, one definition: a second pipeline writing the same target table with another
    definition would replace the first one's partitions (and each ledger would call its own COMPLETE).
    Under another name the same definition is allowed (an alias); the runs then share the target's claims."""
    new = _identity(pipeline)
    for other in _pipelines.values():
        if other.name == pipeline.name or str(other.target) != str(pipeline.target):
            continue
        old = _identity(other)
        differ = [f"{what} {old[what]} vs {new[what]}" for what in old if old[what] != new[what]]
        if differ:
            raise PipelineDefinitionError(
                f"pipelines {other.name!r} and {pipeline.name!r} both write {pipeline.target} with different "
                f"definitions ({'; '.join(differ)}): one target table has one definition; give one of them its "
                "own target (or register it with replace=True if both are meant)"
            )


def _load_modules() -> None:
    modules = get_settings().pipeline_modules
    with _lock:
        for module in modules:
            if module in _loaded:
                continue
            try:
                importlib.import_module(module)
            except Exception as exc:  # any error in the user's module: one line naming it, the trace as cause
                raise _import_error(module, exc) from exc
            _loaded.add(module)
        check_edges(_nodes(), complete=True)


def _import_error(module: str, exc: Exception) -> ConfigurationError:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
    if missing and (module == missing or module.startswith(missing + ".")):
        # The module itself (or its package) is not there: a typo in the setting or a missing install.
        fix = "fix BACKFILL_PIPELINE_MODULES or install the package that provides it"
    else:
        fix = "fix it or BACKFILL_PIPELINE_MODULES"
    return ConfigurationError(f"cannot import pipeline module {module!r} ({what}): {fix}")


def get_pipeline(name: str) -> Pipeline:
    _load_modules()
    try:
        return _pipelines[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_pipelines), n=1)
        if close:
            hint = f"did you mean {close[0]!r}?"
        elif not get_settings().pipeline_modules:
            hint = (
                "no pipeline modules are configured: set BACKFILL_PIPELINE_MODULES=your.module "
                "(or pipeline_modules under [tool.prefect-backfill] in pyproject.toml)"
            )
        else:
            hint = "run `backfill pipelines` to list them"
        raise UnknownPipelineError(f"unknown pipeline {name!r}: {hint}") from None


def all_pipelines() -> list[Pipeline]:
    _load_modules()
    return sorted(_pipelines.values(), key=lambda p: p.name)
