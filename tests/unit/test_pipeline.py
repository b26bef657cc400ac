import pytest

from prefect_backfill.errors import PipelineDefinitionError, UnknownPipelineError
from prefect_backfill.pipeline import Pipeline, TableRef, transform_source_hash
from prefect_backfill.registry import get_pipeline, register


def keep(df):  # type: ignore[no-untyped-def]
    return df


def keep_reformatted(df):  # type: ignore[no-untyped-def]
    # a comment and other spacing do not change the code
    return df


def double(df):  # type: ignore[no-untyped-def]
    return df.union(df)


def test_code_hash_ignores_formatting_but_not_logic() -> None:
    assert transform_source_hash(keep) == transform_source_hash(keep_reformatted)
    assert transform_source_hash(keep) != transform_source_hash(double)


def test_fingerprint_carries_version_and_code() -> None:
    a = Pipeline("p", "/lake/a", "/lake/b", "d", keep, "1")
    b = Pipeline("p", "/lake/a", "/lake/b", "d", double, "1")
    c = Pipeline("p", "/lake/a", "/lake/b", "d", keep, "2")
    assert len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    assert a.fingerprint.startswith("1:")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"partition_column": "order date"}, "partition column 'order date' is not a plain identifier"),
        ({"partition_column": "d; DROP TABLE x"}, "is not a plain identifier"),
        ({"target": "silver.orders`; --"}, "table name part"),
        ({"name": "bad name!"}, "pipeline name 'bad name!' is invalid"),
        ({"version": " "}, "version is empty"),
        ({"grain": "week"}, "grain 'week' is not one of hour, day, month"),
        ({"target": "/lake/a"}, "source and target are the same table"),
    ],
)
def test_bad_definitions_fail_at_definition_time(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = dict(
        name="p", source="/lake/a", target="/lake/b", partition_column="d", transform=keep, version="1"
    )
    args.update(kwargs)
    with pytest.raises(PipelineDefinitionError, match=message):
        Pipeline(**args)  # type: ignore[arg-type]


def test_table_refs() -> None:
    assert TableRef("/lake/x").is_path and TableRef("s3a://bucket/x").is_path
    assert not TableRef("silver.orders").is_path


def test_unknown_pipeline_suggests_the_closest_name() -> None:
    register(Pipeline("orders_silver", "/lake/a", "/lake/b", "d", keep, "1"))
    with pytest.raises(UnknownPipelineError, match="did you mean 'orders_silver'"):
        get_pipeline("order_silver")


def test_conflicting_registrations_are_refused_unless_replaced() -> None:
    register(Pipeline("conflict", "/lake/a", "/lake/b", "d", keep, "1"))
    with pytest.raises(PipelineDefinitionError, match="registered twice"):
        register(Pipeline("conflict", "/lake/a", "/lake/b", "d", keep, "2"))
    register(Pipeline("conflict", "/lake/a", "/lake/b", "d", keep, "2"), replace=True)
    assert get_pipeline("conflict").version == "2"
