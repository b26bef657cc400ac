"""The run's parameters are one value: :class:`BackfillRequest`. Everything that spells them out again
(the flow's signature and its parameter schema, which the Prefect UI's run form shows; the ``run`` and
``plan`` options; prefect.yaml's parameter docs and parameters; the README's synopsis) must agree with it
on names, defaults, bounds and help. A new field that one of them forgets fails here."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import typer.main
import yaml

from flows.backfill import backfill
from prefect_backfill.cli import app
from prefect_backfill.cli.request_options import PLAN_FIELDS, RUN_FIELDS
from prefect_backfill.request import BackfillRequest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = BackfillRequest.model_fields
PARAMETERS = [name for name in FIELDS if name != "pipeline"]


def _same_default(flow_default: Any, model_default: Any) -> bool:
    """The flow takes JSON: ``None`` for an empty list, a string for an enum."""
    if flow_default is None and model_default == ():
        return True
    return bool(flow_default == model_default)


def test_the_flow_takes_every_field_by_name_with_its_default() -> None:
    signature = inspect.signature(backfill.fn)
    assert list(signature.parameters) == list(FIELDS)
    for name, param in signature.parameters.items():
        default = FIELDS[name].default if name != "pipeline" else inspect.Parameter.empty
        assert _same_default(param.default, default), name


def test_the_flow_parameter_schema_describes_every_field_as_the_model_does() -> None:
    """What the deployment's run form in the Prefect UI shows under each parameter."""
    schema = backfill.parameters.model_dump()
    assert schema["required"] == ["pipeline"]
    for name, info in FIELDS.items():
        assert schema["properties"][name]["description"] == info.description, name


def _options(command: str) -> dict[str, Any]:
    click_command = typer.main.get_command(app)
    params = click_command.commands[command].params  # type: ignore[attr-defined]
    return {p.name: p for p in params if p.param_type_name == "option"}


@pytest.mark.parametrize(("command", "fields"), [("run", RUN_FIELDS), ("plan", PLAN_FIELDS)])
def test_the_cli_options_are_the_fields_with_their_flag_default_bounds_and_help(
    command: str, fields: tuple[str, ...]
) -> None:
    assert tuple(PARAMETERS) == RUN_FIELDS
    options = _options(command)
    for name in fields:
        option, info = options[name], FIELDS[name]
        assert option.opts[0] == BackfillRequest.flag(name), name
        assert option.help == info.description, name
        assert _same_default(option.default, info.default), name
        ge = next((r.ge for r in info.metadata if isinstance(r, annotated_types.Ge)), None)
        ge = next((r.gt for r in info.metadata if isinstance(r, annotated_types.Gt)), ge)  # shown as x>=gt
        le = next((r.le for r in info.metadata if isinstance(r, annotated_types.Le)), None)
        assert (option.min, option.max) == (ge, le), name
    # The run command has nothing the request does not (beyond PIPELINE): one definition.
    if command == "run":
        assert set(options) == set(fields)


def _backfill_deployments() -> list[dict[str, Any]]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return [d for d in config["deployments"] if d.get("entrypoint", "").endswith("flows/backfill.py:backfill")]


def test_prefect_yaml_names_every_parameter_and_sets_only_real_ones() -> None:
    deployments = _backfill_deployments()
    assert deployments
    for deployment in deployments:
        assert set(deployment["parameters"]) <= set(FIELDS), deployment["name"]
        BackfillRequest.build(**deployment["parameters"])  # and they make a valid request
    described = _backfill_deployments()[0]["description"]
    named = set(re.findall(r"\b[a-z]+(?:_[a-z]+)*\b", described))
    assert set(FIELDS) <= named, sorted(set(FIELDS) - named)


def test_the_readme_synopsis_shows_every_flag() -> None:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `backfill run ")]
    shown = set(re.findall(r"--[a-z-]+", " ".join(rows)))
    assert set(BackfillRequest.flags().values()) <= shown, sorted(set(BackfillRequest.flags().values()) - shown)


def test_every_field_has_a_flag_and_help() -> None:
    for name in PARAMETERS:
        assert BackfillRequest.flag(name).startswith("--"), name
        assert FIELDS[name].description, name


def test_the_cli_runs_the_flow_prefect_yaml_deploys() -> None:
    """The CLI loads the flow by the entrypoint the deployments name (the core imports no flows)."""
    from prefect_backfill.run_state import FLOW_ENTRYPOINT, load_flow

    assert load_flow() is backfill
    assert {d["entrypoint"] for d in _backfill_deployments()} == {FLOW_ENTRYPOINT}
