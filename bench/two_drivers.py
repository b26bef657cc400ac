"""Two Spark drivers committing to one Delta table on S3 at the same time: how many commits vanish with
Delta's default S3 log store (``S3SingleDriverLogStore``), and that none do with ``ConditionalPutLogStore``.

Each driver is its own process and SparkSession on a real S3 server (versitygw,
:mod:`prefect_backfill.testing.object_store`). The table is partitioned by ``day``; driver A overwrites its
own (even) days and driver B its own (odd) days with ``replaceWhere``, one commit per round, tagging each
commit with ``userMetadata`` = ``<driver>-<round>``. Both start their rounds at the same moment and, with
``--period``, start each round at the same moment too. Afterwards the ``_delta_log/*.json`` files are read
straight from the server's folder: a commit a driver saw succeed but whose tag is not in the log is lost.
The table is read back too (delta-rs, no JVM): each day must hold exactly the rows of its last round.

    python -m bench.two_drivers                     # both stores, 30 rounds, once
    python -m bench.two_drivers --runs 3 --store default --rounds 40 --period 0

``python -m bench.two_drivers driver SPEC.json`` is one driver (what the orchestrator starts, twice).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from prefect_backfill.testing.object_store import ObjectStore, running_store

__all__ = ["Outcome", "driver_env", "race", "verify"]

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "lake"
DAYS_PER_DRIVER = 4
ROWS_PER_DAY = 5
FIRST_DAY = date(2024, 1, 1)
READY_TIMEOUT = 300.0  # two JVMs starting on a loaded 2-core machine
STORES = ("default", "conditional")


@dataclass(frozen=True)
class Outcome:
    """One race of the two drivers, checked: ``made`` commits they saw succeed, ``lost`` of them not in the log."""

    store: str
    rounds: int  # per driver
    made: int
    lost: int
    failed: int  # rounds whose write raised (reported failures, not losses)
    bad_days: int  # days not holding exactly the rows of their last committed round
    wall_s: float  # the race itself, from the common start to the last driver done
    lost_tags: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    versions: int = 0  # commit files in the log
    misplaced: int = 0  # commits in the log, but not at the version their driver saw them take

    def row(self) -> str:
        counts = f"{self.rounds:>7}{self.made:>8}{self.lost:>6}{self.failed:>8}{self.bad_days:>9}"
        return f"{self.store:<12}{counts}{self.wall_s:>9.1f}"


HEADER = f"{'store':<12}{'rounds':>7}{'commits':>8}{'lost':>6}{'failed':>8}{'bad days':>9}{'wall s':>9}"


def driver_env(store: ObjectStore, cache_dir: Path, *, conditional: bool) -> dict[str, str]:
    """A driver's settings: the package's own, as a `backfill run` on ``store`` has them (its Spark and S3A
    configuration, its resolved jars and class archive from ``cache_dir``), on one core; Delta's default S3
    log store where not ``conditional`` (``BACKFILL_S3_SINGLE_DRIVER``), so both arms differ in that only."""
    return {
        **store.env,
        "BACKFILL_CACHE_DIR": str(cache_dir.resolve()),
        "BACKFILL_SPARK_MASTER": "local[1]",
        "BACKFILL_SPARK_SHUFFLE_PARTITIONS": "1",
        "BACKFILL_S3_SINGLE_DRIVER": str(not conditional).lower(),
    }


def _days(parity: int) -> list[str]:
    return [(FIRST_DAY + timedelta(days=2 * i + parity)).isoformat() for i in range(DAYS_PER_DRIVER)]


def race(
    store: ObjectStore, cache_dir: Path, table: str, *, conditional: bool, rounds: int, period: float, work: Path
) -> Outcome:
    """Start drivers A and B on ``s3a://lake/<table>``, let them race ``rounds`` rounds each, check the log."""
    store.bucket(BUCKET)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **driver_env(store, cache_dir, conditional=conditional), "SPARK_LOCAL_IP": "127.0.0.1"}
    for key in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "PYSPARK_SUBMIT_ARGS", "SPARK_CONF_DIR"):
        env.pop(key, None)
    go = work / "go"
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for name, parity in (("A", 0), ("B", 1)):
            spec = {
                "name": name,
                "creates": name == "A",
                "table": f"s3a://{BUCKET}/{table}",
                "days": _days(parity),
                "all_days": sorted(_days(0) + _days(1)),
                "rounds": rounds,
                "period": period,
                "created": str(work / "created"),
                "ready": str(work / f"ready-{name}"),
                "go": str(go),
                "out": str(work / f"out-{name}.json"),
            }
            (work / f"spec-{name}.json").write_text(json.dumps(spec))
            log = (work / f"driver-{name}.log").open("wb")
            logs.append(log)
            command = [sys.executable, "-m", "bench.two_drivers", "driver", str(work / f"spec-{name}.json")]
            procs.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + READY_TIMEOUT
        while not all((work / f"ready-{name}").exists() for name in ("A", "B")):
            for name, proc in zip("AB", procs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"driver {name} exited ({proc.returncode}): {_tail(work / f'driver-{name}.log')}"
                    )
            if time.monotonic() > deadline:
                raise RuntimeError(f"the drivers were not ready within {READY_TIMEOUT:.0f} s")
            time.sleep(0.2)
        start = time.time() + 1.0
        pending = work / "go.tmp"
        pending.write_text(repr(start))
        pending.replace(go)  # atomic: a driver polling for "go" never reads it empty (CI read '' once)
        for name, proc in zip("AB", procs, strict=True):
            if proc.wait(timeout=READY_TIMEOUT + rounds * 30) != 0:
                raise RuntimeError(f"driver {name} exited ({proc.returncode}): {_tail(work / f'driver-{name}.log')}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    results = [json.loads((work / f"out-{name}.json").read_text()) for name in ("A", "B")]
    wall = max(result["finished"] for result in results) - start
    return verify(store.root / BUCKET / table, results, "conditional" if conditional else "default", rounds, wall)


def verify(local_table: Path, results: Sequence[Mapping[str, Any]], store: str, rounds: int, wall: float) -> Outcome:
    """Every commit the drivers saw succeed must be in the log with its tag; every day must hold exactly the
    rows of its last committed round."""
    tags: dict[str, list[int]] = {}
    log = local_table / "_delta_log"
    commits = sorted(log.glob("[0-9]*.json"))
    for path in commits:
        for line in path.read_text().splitlines():
            info = json.loads(line).get("commitInfo") if line.strip() else None
            if info and info.get("userMetadata"):
                tags.setdefault(info["userMetadata"], []).append(int(path.name.split(".")[0]))
    made = [r for result in results for r in result["rounds"] if r["ok"]]
    lost = [r["tag"] for r in made if r["tag"] not in tags]
    misplaced = sum(1 for r in made if r["tag"] in tags and tags[r["tag"]] != [r["version"]])
    errors = [f"{r['tag']}: {r['error']}" for result in results for r in result["rounds"] if not r["ok"]]
    failed = len(errors)
    # What each day should hold: the rows of the last round that wrote it and was seen to succeed.
    expected: dict[str, tuple[str, int]] = {}
    for result in results:
        for r in result["rounds"]:
            if r["ok"]:
                expected[r["day"]] = (result["name"], r["round"])
    bad_days = 0
    try:
        from deltalake import DeltaTable

        rows = DeltaTable(str(local_table)).to_pyarrow_table(columns=["day", "driver", "round"]).to_pylist()
        held: dict[str, list[tuple[str, int]]] = {}
        for row in rows:
            held.setdefault(str(row["day"]), []).append((row["driver"], row["round"]))
        for day, last in expected.items():
            if held.get(day, []) != [last] * ROWS_PER_DAY:
                bad_days += 1
    except Exception as exc:  # a table the lost commits broke: count every day as bad, say why
        bad_days = len(expected)
        errors.append(f"reading the table back: {type(exc).__name__}: {exc}")
    return Outcome(
        store, rounds, len(made), len(lost), failed, bad_days, round(wall, 1), lost, errors, len(commits), misplaced
    )


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


# -- one driver (its own process) -------------------------------------------------------------------


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.05)


def driver(spec_path: Path) -> None:
    """Start a session, (A) create the table, warm up, say ready, wait for the common start, race."""
    spec = json.loads(spec_path.read_text())
    from prefect_backfill.engine.spark import get_spark

    spark = get_spark(object_store=True)
    table, name = spec["table"], spec["name"]
    schema = "day DATE, driver STRING, round INT, n INT"

    def write(day: str, round_: int, tag: str, *, create: bool = False) -> None:
        days = spec["all_days"] if create else [day]
        data = [(date.fromisoformat(d), name, round_, n) for d in days for n in range(ROWS_PER_DAY)]
        frame = spark.createDataFrame(data, schema).write.format("delta").mode("overwrite")
        frame = frame.option("userMetadata", tag)
        if create:
            frame.partitionBy("day").save(table)
        else:
            frame.option("replaceWhere", f"day = DATE'{day}'").save(table)

    def version() -> int:
        jvm: Any = spark._jvm
        delta_log = jvm.org.apache.spark.sql.delta.DeltaLog.forTable(spark._jsparkSession, table)
        return int(delta_log.unsafeVolatileSnapshot().version())

    if spec["creates"]:
        write("", -1, f"create-{name}", create=True)
        Path(spec["created"]).write_text("")
    else:
        _wait_for(Path(spec["created"]), READY_TIMEOUT)
    write(spec["days"][0], -1, f"warmup-{name}")  # the first write of a session is slow: not in the race
    Path(spec["ready"]).write_text("")
    _wait_for(Path(spec["go"]), READY_TIMEOUT)
    start = float(Path(spec["go"]).read_text())
    rounds = []
    for i in range(spec["rounds"]):
        time.sleep(max(0.0, start + i * spec["period"] - time.time()))
        day, tag = spec["days"][i % len(spec["days"])], f"{name}-{i}"
        record: dict[str, Any] = {"round": i, "day": day, "tag": tag, "began": time.time()}
        try:
            write(day, i, tag)
            record |= {"ok": True, "version": version(), "ended": time.time()}
        except Exception as exc:  # recorded, not fatal: a failed commit is reported, not lost
            record |= {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
        rounds.append(record)
    Path(spec["out"]).write_text(json.dumps({"name": name, "rounds": rounds, "finished": time.time()}))
    spark.stop()


# -- the command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["driver"]:
        driver(Path(args[1]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.two_drivers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=[*STORES, "both"], default="both")
    parser.add_argument("--rounds", type=int, default=30, help="rounds per driver (one commit each)")
    parser.add_argument("--runs", type=int, default=1, help="races per store")
    parser.add_argument("--period", type=float, default=2.0, help="seconds between round starts; 0: free-running")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("BACKFILL_CACHE_DIR", ROOT / ".cache")))
    parser.add_argument("--json", type=Path, help="also write the outcomes here")
    parser.add_argument("--keep", action="store_true", help="keep the server's folder and the drivers' logs")
    options = parser.parse_args(args)
    stores = STORES if options.store == "both" else (options.store,)
    work = Path(tempfile.mkdtemp(prefix="two-drivers-"))
    outcomes: list[Outcome] = []
    print(f"period {options.period:g} s, {DAYS_PER_DRIVER} days per driver, work in {work}", flush=True)
    print(HEADER, flush=True)
    with running_store(options.cache_dir, work / "s3", log=work / "versitygw.log") as store:
        for run in range(options.runs):
            for kind in stores:
                outcome = race(
                    store,
                    options.cache_dir,
                    f"t-{kind}-{run}",
                    conditional=kind == "conditional",
                    rounds=options.rounds,
                    period=options.period,
                    work=work / f"{kind}-{run}",
                )
                outcomes.append(outcome)
                print(outcome.row(), flush=True)
                for line in [*outcome.lost_tags[:10], *outcome.errors[:5]]:
                    print(f"    {line}", flush=True)
    if options.json:
        options.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
    if not options.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
