"""Users' pipelines are found through a setting, in their own modules."""

import sys
import textwrap
from pathlib import Path

import pytest

from prefect_backfill.errors import ConfigurationError
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
    with pytest.raises(ConfigurationError, match=r"cannot import pipeline module 'no_such_module_here'.*fix BACKFILL"):
        get_pipeline("anything")


def test_pipeline_modules_from_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_backfill.settings import get_settings

    (tmp_path / "pyproject.toml").write_text('[tool.prefect-backfill]\npipeline_modules = ["x.y", "z"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BACKFILL_PIPELINE_MODULES", raising=False)
    assert get_settings().pipeline_modules == ["x.y", "z"]
