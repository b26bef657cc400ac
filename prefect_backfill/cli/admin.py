"""``backfill setup``, ``backfill spark-connect`` and ``backfill demo``: set-up and the demo lakehouse."""

from __future__ import annotations

import contextlib
import os
from typing import Annotated

import typer

from prefect_backfill.cli.app import app, console
from prefect_backfill.cli.review import diff
from prefect_backfill.cli.run import run_request
from prefect_backfill.errors import BackfillError
from prefect_backfill.request import BackfillRequest

_MAX_CONCURRENCY = BackfillRequest.model_fields["max_concurrency"]


@app.command()
def setup(
    object_store: Annotated[
        bool,
        typer.Option(
            "--object-store",
            help="Also fetch the Hadoop S3A connector (with the AWS SDK bundle, about 650 MB) for s3:// tables.",
        ),
    ] = False,
) -> None:
    """Fetch Delta's jars from Maven Central into the project cache, check Spark + Delta start, and
    write the archive of the driver's classes later runs start from (once per JDK and Spark)."""
    import tempfile
    from pathlib import Path

    from prefect_backfill.engine import class_archive
    from prefect_backfill.engine.spark import DELTA_PACKAGE, S3A_PACKAGE, get_spark, stop_spark
    from prefect_backfill.settings import get_settings

    settings = get_settings()
    archive = class_archive.archive_path(settings.cache_dir) if settings.spark_class_archive else None
    part = archive.with_name(f"{archive.name}.{os.getpid()}.part") if archive and not archive.is_file() else None
    spark = get_spark(object_store=object_store, archive_to=part)
    packages = f"{DELTA_PACKAGE} and {S3A_PACKAGE}" if object_store else DELTA_PACKAGE
    console.print(f"Spark {spark.version} with {packages} ready (jars cached in {settings.ivy_dir})", highlight=False)
    if archive is None or part is None:
        return
    failed = ""
    with tempfile.TemporaryDirectory(prefix="backfill-class-archive-") as scratch:
        try:
            class_archive.exercise(spark, Path(scratch))
        except Exception as exc:  # an optimisation only: without the archive, runs start as before
            failed = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
        stop_spark(jvm=True)  # the JVM writes the archive as it exits
    if failed:
        part.unlink(missing_ok=True)
    if failed or not class_archive.keep(part, archive):
        console.print(
            f"no class archive written ({failed or 'the JVM wrote none'}; Spark's output is in "
            f"{settings.cache_dir / 'logs'}): runs start without it",
            style="yellow",
            highlight=False,
        )
        return
    console.print(f"Spark's driver classes archived in {archive}: later runs start from it", highlight=False)


@app.command("spark-connect")
def spark_connect(
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 15002,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for other hosts).")] = "127.0.0.1",
    print_only: Annotated[bool, typer.Option("--print", help="Print the command line instead of running it.")] = False,
) -> None:
    """Run a Spark Connect server with Delta's jars (from pyspark's own launcher), for
    BACKFILL_SPARK_REMOTE=sc://HOST:PORT clients. Runs in the foreground; stop it with Ctrl-C."""
    import shlex

    from prefect_backfill.engine.spark import connect_server_command, java_home, spark_home
    from prefect_backfill.settings import get_settings

    command = connect_server_command(get_settings(), port, host)
    if print_only:
        print(shlex.join(command))
        return
    env = {**os.environ, "SPARK_HOME": str(spark_home()), "JAVA_HOME": java_home()}
    console.print(f"Spark Connect on sc://{host}:{port} (Ctrl-C stops it)", highlight=False)
    os.execvpe(command[0], command, env)


@app.command()
def demo(
    rows_per_day: Annotated[int, typer.Option("--rows-per-day", min=1)] = 2_000,
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", min=1, help=_MAX_CONCURRENCY.description)
    ] = _MAX_CONCURRENCY.default,
    regenerate: Annotated[
        bool, typer.Option("--regenerate", help="Rewrite the bronze table and silver's version 1.")
    ] = False,
    lake: Annotated[
        str | None,
        typer.Option(
            "--lake",
            help="Where the demo lakehouse lives: a folder or an object-store prefix such as s3a://lake/demo "
            "(the BACKFILL_S3_* settings and AWS credentials say how to reach it). Default: BACKFILL_DEMO_LAKE, "
            "else .data/lake.",
        ),
    ] = None,
) -> None:
    """Create the demo bronze table, the silver table version 1 wrote and the gold built from it (once each),
    then backfill demo_orders version 2 over 2024-01-01 … 2024-06-30 (three canaries first, then the rest, and
    the diff), which marks gold's six months STALE, and rebuild them (demo_revenue's default run)."""
    if lake is not None:  # before the demo pipeline is registered: its tables are read from the settings
        os.environ["BACKFILL_DEMO_LAKE"] = lake
    from prefect_backfill import demo as demo_module
    from prefect_backfill.engine import get_engine
    from prefect_backfill.pipeline import TableRef

    engine = get_engine()  # Spark, unless BACKFILL_ENGINE says otherwise
    if regenerate or not engine.describe(TableRef(demo_module.bronze_path())).exists:
        rows = demo_module.generate_orders(demo_module.bronze_path(), rows_per_day=rows_per_day)
        console.print(f"wrote {rows:,} bronze orders to {demo_module.bronze_path()}", highlight=False)
    if regenerate or not engine.describe(TableRef(demo_module.silver_path())).exists:
        rows = demo_module.write_version_one(demo_module.bronze_path(), demo_module.silver_path())
        console.print(
            f"wrote {rows:,} silver orders with version 1 (the bug: amount_usd = amount) to "
            f"{demo_module.silver_path()}",
            highlight=False,
        )
    months = {"start": demo_module.DEMO_START[:7], "end": demo_module.DEMO_END[:7], "max_concurrency": max_concurrency}
    if regenerate or not engine.describe(TableRef(demo_module.gold_path())).exists:
        # Gold as the daily jobs left it: built from the wrong silver (nothing to mark yet).
        run_request(BackfillRequest.build(pipeline="demo_revenue", reprocess="all", **months))
    # Three canaries (first, middle, last day) go first and their diff is shown; --approve: the demo
    # runs unattended (`backfill run demo_orders … --canary 3` without it asks on a terminal). Its commits
    # mark gold's months STALE (demo_revenue declares demo_orders upstream, day → month).
    try:
        run_request(
            BackfillRequest.build(
                pipeline="demo_orders",
                start=demo_module.DEMO_START,
                end=demo_module.DEMO_END,
                max_concurrency=max_concurrency,
                canary=3,
                approve=True,
            )
        )
    finally:
        with contextlib.suppress(BackfillError):
            diff("demo_orders", limit=6)
    # The second level: gold's default run takes exactly the months the silver fix marked.
    run_request(BackfillRequest.build(pipeline="demo_revenue", **months))
