"""Users' pipelines are found through a setting, in their own modules."""

import sys
import textwrap
from pathlib import Path

import pytest

from prefect_backfill.errors import ConfigurationError, UnknownPipelineError
from prefect_backfill.registry import all_pipelines, get_pipeline


def test_pipelines_are_loaded_from_the_modules_named_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "acme_pipelines.py").write_text(
        textwrap.dedent(
            """
            from prefect_backfill import Pipeline, register

            def to_silver(df):
                return df

            register(Pipeline("acme_orders", "/lake/bronze/acme", "/lake/silver/acme", "dt", to_silver, "7",
                              grain="month"))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BACKFILL_PIPELINE_MODULES", "acme_pipelines, prefect_backfill.demo")
    pipeline = get_pipeline("acme_orders")
    assert pipeline.version == "7" and pipeline.grain.value == "month"
    assert {"acme_orders", "demo_orders"} <= {p.name for p in all_pipelines()}
    sys.modules.pop("acme_pipelines", None)


def test_a_missing_pipeline_module_is_a_one_line_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKFILL_PIPELINE_MODULES", "no_such_module_here")
    with pytest.raises(ConfigurationError) as refused:
        get_pipeline("anything")
    assert str(refused.value) == (
        "cannot import pipeline module 'no_such_module_here' (ModuleNotFoundError: No module named "
        "'no_such_module_here'): fix BACKFILL_PIPELINE_MODULES or install the package that provides it"
    )


def test_pipeline_modules_from_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_backfill.settings import get_settings

    (tmp_path / "pyproject.toml").write_text('[tool.prefect-backfill]\npipeline_modules = ["x.y", "z"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BACKFILL_PIPELINE_MODULES", raising=False)
    assert get_settings().pipeline_modules == ["x.y", "z"]


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("x = (\n", "SyntaxError: '(' was never closed (broken_mod_{n}.py, line 1)"),
        ("def f(:\n    pass\n", "SyntaxError: invalid syntax (broken_mod_{n}.py, line 1)"),
        ("undefined_name + 1\n", "NameError: name 'undefined_name' is not defined"),
        ("import no_such_dependency_xyz\n", "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"),
        ("raise RuntimeError('no credentials\\nsecond line')\n", "RuntimeError: no credentials"),
    ],
)
def test_a_pipeline_module_that_fails_to_import_is_one_line_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, shown: str, request: pytest.FixtureRequest
) -> None:
    n = request.node.callspec.indices["body"]
    module = f"broken_mod_{n}"
    (tmp_path / f"{module}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BACKFILL_PIPELINE_MODULES", module)
    with pytest.raises(ConfigurationError) as refused:
        get_pipeline("anything")
    message = str(refused.value)
    assert message == (
        f"cannot import pipeline module {module!r} ({shown.format(n=n)}): fix it or BACKFILL_PIPELINE_MODULES"
    )
    assert refused.value.__cause__ is not None  # the original, for --verbose
    assert refused.value.exit_code == 2
    sys.modules.pop(module, None)


def test_a_second_registration_must_agree_on_source_target_column_and_grain() -> None:
    from prefect_backfill.errors import PipelineDefinitionError
    from prefect_backfill.pipeline import Pipeline
    from prefect_backfill.registry import register

    def keep(df):  # type: ignore[no-untyped-def]
        return df

    first = register(Pipeline("twice", "/lake/a", "/lake/twice-b", "d", keep, "1"), replace=True)
    assert register(Pipeline("twice", "/lake/a", "/lake/twice-b", "d", keep, "1")) is not first  # the same: fine
    for changed, what in [
        ({"source": "/lake/other"}, "source /lake/a vs /lake/other"),
        ({"target": "/lake/twice-c"}, "target /lake/twice-b vs /lake/twice-c"),
        ({"partition_column": "e"}, "partition column d vs e"),
        ({"grain": "month"}, "grain day vs month"),
        ({"version": "2"}, "version 1:"),
    ]:
        args = {"name": "twice", "source": "/lake/a", "target": "/lake/twice-b", "partition_column": "d"}
        args |= {"transform": keep, "version": "1"} | changed
        with pytest.raises(PipelineDefinitionError) as refused:
            register(Pipeline(**args))  # type: ignore[arg-type]
        assert f"pipeline 'twice' is registered twice with different definitions ({what}" in str(refused.value)
        assert str(refused.value).endswith("rename one of them, or pass replace=True if the second is meant")
        assert get_pipeline("twice").source.location == "/lake/a"  # the first one stands
    register(Pipeline("twice", "/lake/a", "/lake/twice-c", "d", keep, "1"), replace=True)
    assert get_pipeline("twice").target.location == "/lake/twice-c"


def test_two_pipelines_on_one_target_must_be_the_same_definition() -> None:
    """One target, one writer: a second name on the same table with another transform would replace the
    first one's partitions while each ledger calls its own COMPLETE."""
    from prefect_backfill.errors import PipelineDefinitionError
    from prefect_backfill.pipeline import Pipeline
    from prefect_backfill.registry import register

    def keep(df):  # type: ignore[no-untyped-def]
        return df

    def double(df):  # type: ignore[no-untyped-def]
        return df

    register(Pipeline("writer_a", "/lake/src", "/lake/shared", "d", keep, "1"), replace=True)
    register(Pipeline("writer_alias", "/lake/src", "/lake/shared", "d", keep, "1"))  # an alias: the same definition
    with pytest.raises(PipelineDefinitionError) as refused:
        register(Pipeline("writer_b", "/lake/src", "/lake/shared", "d", double, "2"))
    message = str(refused.value)
    assert message.startswith("pipelines 'writer_a' and 'writer_b' both write /lake/shared with different definitions")
    assert "version 1:" in message and "\n" not in message
    with pytest.raises(UnknownPipelineError):
        get_pipeline("writer_b")  # nothing registered
    register(Pipeline("writer_b", "/lake/src", "/lake/shared", "d", double, "2"), replace=True)  # meant: allowed
