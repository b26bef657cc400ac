"""The run parameters as command-line options, made from the request model.

``backfill run`` takes every field of :class:`~prefect_backfill.request.BackfillRequest` as an option,
``backfill plan`` the ones that change a plan; both get them from :func:`request_options`, so a flag,
its default, its bounds (shown in ``--help`` and enforced by the parser) and its help text are written
once, on the model. What is specific to a terminal is the rendering of a few fields, kept here: a list
of keys typed comma-separated, a flag repeated for each key.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import annotated_types
import typer

from prefect_backfill.cli.app import _keys
from prefect_backfill.planning import Reprocess
from prefect_backfill.request import BackfillRequest

__all__ = ["PLAN_FIELDS", "RUN_FIELDS", "request_options"]

#: Lists typed as one comma-separated value (``--partitions 2024-01-03,2024-01-05``).
COMMA_SEPARATED = frozenset({"partitions", "canary_partitions"})
#: Lists given by repeating the flag (``--exclude K1 --exclude K2``).
REPEATED = frozenset({"exclude"})

RUN_FIELDS: tuple[str, ...] = tuple(name for name in BackfillRequest.model_fields if name != "pipeline")
#: What changes what a run would do (``backfill plan``): the range, what to take and how it is chunked.
PLAN_FIELDS: tuple[str, ...] = (
    "start",
    "end",
    "partitions",
    "reprocess",
    "exclude",
    "newest_first",
    "yes",
    "max_concurrency",
    "chunk_mb",
    "chunk_partitions",
    "cascade",
)


def _bounds(name: str) -> dict[str, Any]:
    """The field's bounds, as typer's ``min``/``max`` (so ``--help`` shows ``[0<=x<=20]``). Typer has no
    open bound: ``gt=0`` is shown as ``x>=0``, and the request itself refuses 0 (one line, exit 2)."""
    out: dict[str, Any] = {}
    for rule in BackfillRequest.model_fields[name].metadata:
        if isinstance(rule, annotated_types.Ge):
            out["min"] = rule.ge
        elif isinstance(rule, annotated_types.Gt):
            out["min"] = rule.gt
        elif isinstance(rule, annotated_types.Le):
            out["max"] = rule.le
    return out


def _option(name: str) -> inspect.Parameter:
    """The ``typer`` option of one request field."""
    info = BackfillRequest.model_fields[name]
    cli_type: Any
    if name in COMMA_SEPARATED:
        cli_type, default = str | None, None
    elif name in REPEATED:
        cli_type, default = list[str] | None, None
    elif info.annotation is Reprocess:
        cli_type, default = str, Reprocess(info.default).value
    elif name == "cascade":  # an optional enum: typed as its word
        cli_type, default = str | None, None
    else:
        cli_type, default = info.annotation, info.default
    option = typer.Option(BackfillRequest.flag(name), help=info.description, **_bounds(name))
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[cli_type, option]
    )


def _request(pipeline: str, values: dict[str, Any]) -> BackfillRequest:
    """The request the options describe, validated (one line naming the flag on bad input)."""
    params = {
        k: _keys(v) if k in COMMA_SEPARATED else tuple(v or ()) if k in REPEATED else v for k, v in values.items()
    }
    return BackfillRequest.build(pipeline=pipeline, **params)


def request_options(fields: Sequence[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command ``fields`` of the request as options: the command's first parameter is the
    validated :class:`BackfillRequest` (its PIPELINE argument included); its other parameters stay its own
    options. The options follow PIPELINE in ``--help``, in the model's order."""

    def wrap(command: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(command, eval_str=True)
        first, *rest = own.parameters.values()
        assert first.name == "request", f"{command.__name__} must take the request first"

        @functools.wraps(command)
        def with_request(pipeline: str, **values: Any) -> None:
            request = _request(pipeline, {name: values.pop(name) for name in fields})
            command(request, **values)

        pipeline = inspect.Parameter("pipeline", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str)
        keyword_only = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in rest]
        with_request.__signature__ = own.replace(  # type: ignore[attr-defined]
            parameters=[pipeline, *(_option(name) for name in fields), *keyword_only]
        )
        with_request.__annotations__ = {}  # typer reads the signature above, not the command's own hints
        return with_request

    return wrap
