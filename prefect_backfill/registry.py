"""Pipelines by name: users register their own in their own modules, listed in a setting.

``BACKFILL_PIPELINE_MODULES=my_company.pipelines`` (or ``pipeline_modules`` under
``[tool.prefect-backfill]`` in pyproject.toml) names modules that call :func:`register`; they are
imported on the first lookup, in every process that needs them (CLI, flow run, Dask worker).
"""

from __future__ import annotations

import difflib
import importlib
import threading

from prefect_backfill.errors import ConfigurationError, PipelineDefinitionError, UnknownPipelineError
from prefect_backfill.pipeline import Pipeline
from prefect_backfill.settings import get_settings

__all__ = ["all_pipelines", "get_pipeline", "register"]

_pipelines: dict[str, Pipeline] = {}
_loaded: set[str] = set()
_lock = threading.Lock()


def register(pipeline: Pipeline, *, replace: bool = False) -> Pipeline:
    """Make ``pipeline`` available by name. Registering the same name twice with a different
    definition is an error (two modules disagreeing about one pipeline is a bug worth stopping on)
    unless ``replace`` says it is meant (a notebook redefining its pipeline, a test)."""
    existing = _pipelines.get(pipeline.name)
    if not replace and existing is not None and existing != pipeline and existing.fingerprint != pipeline.fingerprint:
        raise PipelineDefinitionError(
            f"pipeline {pipeline.name!r} is registered twice with different definitions: rename one of them"
        )
    _pipelines[pipeline.name] = pipeline
    return pipeline


def _load_modules() -> None:
    modules = get_settings().pipeline_modules
    with _lock:
        for module in modules:
            if module in _loaded:
                continue
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigurationError(
                    f"cannot import pipeline module {module!r} ({exc}): fix BACKFILL_PIPELINE_MODULES "
                    "or install the package that provides it"
                ) from exc
            _loaded.add(module)


def get_pipeline(name: str) -> Pipeline:
    _load_modules()
    try:
        return _pipelines[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_pipelines), n=1)
        hint = f"did you mean {close[0]!r}?" if close else "run `backfill pipelines` to list them"
        raise UnknownPipelineError(f"unknown pipeline {name!r}: {hint}") from None


def all_pipelines() -> list[Pipeline]:
    _load_modules()
    return sorted(_pipelines.values(), key=lambda p: p.name)
