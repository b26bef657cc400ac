"""One Spark session per process, created lazily from settings and reused by every task.

Delta's jars come from Maven Central through Spark's own Ivy resolver into ``<cache_dir>/ivy``, with
an ivysettings file that consults Maven Central only (a stray ``~/.m2`` pom without its jar otherwise
breaks resolution). Jars Spark already ships are excluded so the classpath holds one copy of each.

With ``BACKFILL_SPARK_REMOTE=sc://host:15002`` the session is a Spark Connect client instead: no JVM in
this process and no jars sent; the server must already have Delta on its classpath
(:func:`connect_server_command` starts one that does). Only runtime SQL confs reach a Connect session.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import warnings
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from prefect_backfill import phases
from prefect_backfill.catalog import catalog_conf
from prefect_backfill.engine import class_archive, jvm_output
from prefect_backfill.engine.jar_fetch import one_fetch_at_a_time, resolved_jars
from prefect_backfill.engine.log_store import LOG_STORE_CLASS, log_store_jar
from prefect_backfill.engine.runtime import DELTA_PACKAGE, java_home, spark_home
from prefect_backfill.errors import ConfigurationError
from prefect_backfill.settings import BackfillSettings, get_settings
from prefect_backfill.storage import s3a_conf

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "CONNECT_DEFAULT_PORT",
    "DELTA_PACKAGE",
    "S3A_PACKAGE",
    "connect_address",
    "connect_server_command",
    "get_spark",
    "is_remote",
    "java_home",
    "spark_conf",
    "spark_home",
    "stop_spark",
    "uses_connect",
]

# Hadoop's S3A connector, the release of pyspark's own hadoop-client (3.5.0): fetched (with the AWS SDK
# bundle, ~690 MB once) only by a session that reads or writes s3:// / s3a:// tables.
S3A_PACKAGE = "org.apache.hadoop:hadoop-aws:3.5.0"

# Transitive dependencies of delta-spark that pyspark's own jars already provide in newer versions.
_PROVIDED_BY_SPARK = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "org.apache.parquet:parquet-hadoop",
    "org.apache.parquet:parquet-column",
    "org.apache.parquet:parquet-common",
    "org.apache.parquet:parquet-encoding",
    "org.apache.parquet:parquet-format-structures",
    "org.apache.parquet:parquet-jackson",
    "com.fasterxml.jackson.core:jackson-databind",
    "com.fasterxml.jackson.core:jackson-core",
    "com.fasterxml.jackson.core:jackson-annotations",
    "org.apache.logging.log4j:log4j-api",
    "org.apache.logging.log4j:log4j-core",
    "org.apache.logging.log4j:log4j-slf4j2-impl",
    "org.slf4j:slf4j-api",
    "org.xerial.snappy:snappy-java",
    "com.github.luben:zstd-jni",
    "io.airlift:aircompressor",
    "org.roaringbitmap:RoaringBitmap",
    "com.google.code.findbugs:jsr305",
    "commons-pool:commons-pool",
    "commons-logging:commons-logging",
    "org.scala-lang:scala-library",
    "org.locationtech.jts:jts-core",
)

# Spark Connect's own default port (an sc:// URL without a port means this one).
CONNECT_DEFAULT_PORT = 15002
_CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
# Runtime SQL confs: the only part of the configuration a Spark Connect client can set on its session.
_SESSION_KEYS = (
    "spark.sql.shuffle.partitions",
    "spark.databricks.delta.snapshotPartitions",
    "spark.sql.session.timeZone",
    "spark.sql.adaptive.enabled",
)

_session: SparkSession | None = None
_session_has_s3 = False
_lock = threading.Lock()


def uses_connect(settings: BackfillSettings) -> bool:
    """Whether ``settings`` ask for a Spark Connect client (``spark_remote``) rather than a local driver."""
    return bool(settings.spark_remote and settings.spark_remote.strip())


def is_remote(spark: SparkSession) -> bool:
    """True for a Spark Connect session: no SparkContext, no local properties, no JVM in this process."""
    try:
        from pyspark.sql.connect.session import SparkSession as RemoteSparkSession
    except ImportError:  # pyspark without the [connect] extras cannot have made one
        return False
    return isinstance(spark, RemoteSparkSession)


def connect_address(url: str) -> tuple[str, int]:
    """Host and port of a Spark Connect URL (``sc://host[:port][/;param=value…]``)."""
    parts = urlsplit(url.strip())
    if parts.scheme != "sc" or not parts.hostname:
        raise ConfigurationError(
            f"BACKFILL_SPARK_REMOTE={url!r} is not a Spark Connect URL: use sc://host:{CONNECT_DEFAULT_PORT}"
        )
    try:
        port = parts.port or CONNECT_DEFAULT_PORT
    except ValueError:
        raise ConfigurationError(
            f"BACKFILL_SPARK_REMOTE={url!r} has an invalid port: use sc://host:{CONNECT_DEFAULT_PORT}"
        ) from None
    return parts.hostname, port


def spark_conf(settings: BackfillSettings, object_store: bool = False) -> dict[str, str]:
    """What this process gives its session builder (pure, so it is unit-tested and printable).

    Classic Spark: the full driver configuration, with the S3A connector when ``object_store`` (a table
    on s3:// or s3a://) or ``settings.s3_connector`` asks for it. Spark Connect: only the runtime SQL confs
    plus ``settings.spark_conf`` (the server was configured when it started; see :func:`connect_server_command`).
    """
    conf = _driver_conf(settings, object_store)
    if uses_connect(settings):
        conf = {key: conf[key] for key in _SESSION_KEYS}
    conf.update(settings.spark_conf)
    return conf


def _driver_conf(settings: BackfillSettings, object_store: bool = False) -> dict[str, str]:
    """The configuration of a Spark driver with Delta: this process's, or a Connect server's."""
    conf = _delta_conf(settings)
    conf.update(catalog_conf(settings))  # catalog names resolve in the metastore, if one is set
    if object_store or settings.s3_connector:
        conf["spark.jars.packages"] = f"{DELTA_PACKAGE},{S3A_PACKAGE}"
        conf.update(s3a_conf(settings))
        if not settings.s3_single_driver:
            # Commit files are created with If-None-Match: several drivers on one table cannot lose a commit
            # (the class's jar is added where the session starts: it is compiled on first use).
            for scheme in ("s3a", "s3"):
                conf[f"spark.delta.logStore.{scheme}.impl"] = LOG_STORE_CLASS
    return conf


def _delta_conf(settings: BackfillSettings) -> dict[str, str]:
    here = resources.files("prefect_backfill.engine")
    conf = {
        "spark.app.name": settings.spark_app_name,
        "spark.master": settings.spark_master,
        "spark.jars.packages": DELTA_PACKAGE,
        "spark.jars.ivy": str(settings.ivy_dir),
        "spark.jars.ivySettings": str(here.joinpath("ivysettings.xml")),
        "spark.jars.excludes": ",".join(_PROVIDED_BY_SPARK),
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.driver.memory": settings.spark_driver_memory,
        # Partitions are small units: a handful of shuffle partitions and a one-task log replay
        # keep per-partition overhead low (Delta's default snapshotPartitions=50 costs seconds).
        "spark.sql.shuffle.partitions": str(settings.spark_shuffle_partitions),
        "spark.databricks.delta.snapshotPartitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": str(settings.spark_ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        # A long backfill must not grow the driver: G1 gives memory back after collections, so the
        # JVM's footprint follows what is live (one partition at a time), not how long the run is.
        "spark.driver.extraJavaOptions": (
            "-XX:+UseG1GC -XX:G1PeriodicGCInterval=15000 -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"
        ),
        "spark.sql.adaptive.enabled": "true",
        # Backfill jobs run in the settings.spark_pool pool ("backfill": weight 1, FAIR inside), so
        # partitions in flight share the executors and, on a shared application, other pools can be
        # given priority.
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": str(here.joinpath("fairscheduler.xml")),
        # Python workers (UDFs) run the driver's interpreter, not whatever `python3` is first on PATH.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
    }
    return conf


def connect_server_command(settings: BackfillSettings, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command line of a Spark Connect server with Delta's jars, listening on ``host:port``
    (loopback by default), with the same driver configuration a local session would get
    (``settings.spark_master`` is where the server runs its jobs).

    Run it with ``SPARK_HOME`` set to :func:`spark_home` and ``JAVA_HOME`` to a JDK 17 or 21; the first
    start resolves the jars from the Ivy cache (``<cache_dir>/ivy``). Clients then use
    ``BACKFILL_SPARK_REMOTE=sc://host:port``.
    """
    conf = {
        **_driver_conf(settings),
        **settings.spark_conf,
        "spark.connect.grpc.binding.address": host,
        "spark.connect.grpc.binding.port": str(port),
    }
    if conf.get("spark.delta.logStore.s3a.impl") == LOG_STORE_CLASS:
        conf["spark.jars"] = str(log_store_jar(settings.cache_dir))
    command = [str(spark_home() / "bin" / "spark-submit"), "--class", _CONNECT_SERVER_CLASS]
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return [*command, "spark-internal"]


def serves_object_store() -> bool:
    """Whether the process's session (if started) has the S3A connector."""
    return _session_has_s3


def started_spark() -> SparkSession | None:
    """The process's Spark session if it has started, without starting it (cancelling needs no JVM)."""
    return _session


def get_spark(object_store: bool = False, *, archive_to: Path | None = None) -> SparkSession:
    """The process's Spark session; the first call starts it (and fetches the jars if needed).

    ``object_store``: the caller's tables are on s3:// or s3a://, so the session needs the S3A connector.
    A session started without it cannot gain it: that is a configuration error, said in one line.
    ``archive_to``: a session this call starts writes the classes it loaded there when its JVM exits
    (``backfill setup``: see :mod:`prefect_backfill.engine.class_archive`)."""
    global _session, _session_has_s3
    session = _session
    if session is None:
        with _lock:
            if _session is None:
                with phases.phase("Spark start"):
                    _session = _start(settings := get_settings(), object_store, archive_to)
                _session_has_s3 = object_store or settings.s3_connector
            session = _session
    if object_store and not _session_has_s3 and not is_remote(session):
        raise ConfigurationError(
            "this process's Spark session started without the S3A connector and an s3:// table now needs it: "
            "set BACKFILL_S3_CONNECTOR=true"
        )
    return session


def _start(settings: BackfillSettings, object_store: bool = False, archive_to: Path | None = None) -> SparkSession:
    if uses_connect(settings):
        return _connect(settings)
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    if home := java_home():
        os.environ["JAVA_HOME"] = home
    # Python workers (UDFs) must run this interpreter, with this environment's packages (pyarrow): a
    # SparkContext started in-process reads PYSPARK_PYTHON, not spark.pyspark.python (only spark-submit
    # does), and falls back to whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    conf = spark_conf(settings, object_store)
    if archive := class_archive.driver_options(settings, archive_to):
        conf["spark.driver.extraJavaOptions"] = " ".join([conf.get("spark.driver.extraJavaOptions", ""), *archive])
    if conf.get("spark.delta.logStore.s3a.impl") == LOG_STORE_CLASS:
        conf["spark.jars"] = str(log_store_jar(settings.cache_dir))  # compiled once per source version
    # pyspark takes SIGINT over when its context starts in the main thread (its handler cancels every job
    # and raises KeyboardInterrupt wherever the main thread is). Signals belong to the run here: it
    # stops in order (prefect_backfill.stopping). Keep whatever handler was in place.
    main = threading.current_thread() is threading.main_thread()
    interrupt = signal.getsignal(signal.SIGINT) if main else None
    packages = conf.get("spark.jars.packages")
    if (jars := resolved_jars(settings.ivy_dir, packages)) is not None:
        # Resolved once in this cache: the same jars without asking Ivy again (see jar_fetch).
        del conf["spark.jars.packages"]
        conf["spark.jars"] = ",".join([*filter(None, conf.get("spark.jars", "").split(",")), *jars])
        packages = None
    for key, value in conf.items():
        builder = builder.config(key, value)
    log = jvm_output.new_log(settings.cache_dir)
    try:
        with one_fetch_at_a_time(settings.ivy_dir, packages) as remember:
            _launch_jvm(conf, log)
            spark = builder.getOrCreate()
            # spark-submit's own list (what it resolved, merged with ours): the session's conf keeps ours only.
            remember(str(spark.sparkContext._jvm.System.getProperty("spark.jars") or "").split(","))  # type: ignore[union-attr]
    except PySparkRuntimeError as exc:
        cause = jvm_output.first_error(log)
        raise ConfigurationError(
            f"Spark did not start ({exc.getCondition()}{': ' + cause if cause else ''}): check JAVA_HOME (JDK 17 "
            f"or 21) and that {DELTA_PACKAGE} can be fetched from Maven Central into {settings.ivy_dir} (run "
            f"`make setup`); Spark's output is in {log}"
        ) from exc
    if main and interrupt is not None:
        signal.signal(signal.SIGINT, interrupt)
    spark.sparkContext.setLogLevel("ERROR")
    jvm_output.quiet_when_the_jvm_goes(spark)
    return spark


def _launch_jvm(conf: dict[str, str], log: Path) -> None:
    """Start the JVM the session will use, its output to ``log`` instead of this terminal (see
    :mod:`jvm_output`). pyspark's own launch, with the same spark-submit arguments the builder would give
    it; a JVM already running in this process (a session stopped and started again) is reused as before."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    with open(log, "ab") as out:
        spark_conf_ = SparkConf().setAll(list(conf.items()))
        gateway = launch_gateway(spark_conf_, popen_kwargs={"stdout": out, "stderr": out})  # type: ignore[no-untyped-call]
    SparkContext._ensure_initialized(gateway=gateway)


def _connect(settings: BackfillSettings, probe_timeout: float = 5.0) -> SparkSession:
    """A Spark Connect session, or a one-line error within seconds if nobody answers: the client's own
    retry policy would keep trying for about ten minutes, so the first round trip gets a short one."""
    from pyspark.errors import PySparkException
    from pyspark.sql import SparkSession
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession as RemoteSparkSession

    url = (settings.spark_remote or "").strip()
    host, port = connect_address(url)
    unreachable = f"Spark Connect at {url} did not answer: start the server or fix BACKFILL_SPARK_REMOTE"
    try:
        socket.create_connection((host, port), timeout=probe_timeout).close()
    except OSError as exc:  # nothing listens there (the common case): no need to wait for gRPC
        raise ConfigurationError(f"{unreachable} ({exc.strerror or exc})") from None
    try:
        # Without options the builder makes no call; then one cheap call with few retries (something
        # that accepts connections but is not a Connect server fails here in seconds).
        spark = SparkSession.builder.remote(url).getOrCreate()
        client = cast(RemoteSparkSession, spark).client
        policies = client.get_retry_policies()
        client.set_retry_policies([DefaultPolicy(max_retries=3, initial_backoff=500, backoff_multiplier=2)])
        try:
            with warnings.catch_warnings():  # the client warns RETRIES_EXCEEDED: the error below says it
                warnings.simplefilter("ignore", UserWarning)
                spark.version  # noqa: B018 - the first round trip
        except PySparkException:
            client.close()  # closed first: stop() and the exit hook then make no call that would retry
            spark.stop()
            raise
        client.set_retry_policies(policies)
        # Runtime confs go in like the builder's own: ones the server refuses (static confs) are ignored.
        builder = SparkSession.builder.remote(url)
        for key, value in spark_conf(settings).items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
    except PySparkException as exc:
        raise ConfigurationError(f"{unreachable} ({exc.getCondition() or type(exc).__name__})") from None
    return spark


def stop_spark(jvm: bool = False) -> None:
    """Stop the process's session. ``jvm``: the JVM too, so that the next start launches a new one with
    the jars it asks for (pyspark otherwise reuses the first JVM, whose classpath cannot gain a connector)."""
    global _session, _session_has_s3
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
            _session_has_s3 = False
        if jvm:
            _stop_jvm()


def _stop_jvm() -> None:
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    proc = getattr(gateway, "proc", None)
    gateway.shutdown()
    SparkContext._gateway = None
    SparkContext._jvm = None
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()  # the JVM exits when its stdin closes (pyspark's own contract)
        proc.wait(60)
