"""The pure parts of bench/real_sizes.py: the spills summed from an event log, the cache key, the scenarios
chosen, what the CLI's output says, and the page; nothing here starts Spark or a process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import real_sizes
from bench.harness import ROOT
from bench.real_sizes import Scenario, Source

MIB = 1024 * 1024


def _task_end(memory: int, disk: int, gc: int, reason: str = "Success", heap: int = 0, jvm_gc: int = 0) -> str:
    event = {
        "Event": "SparkListenerTaskEnd",
        "Task End Reason": {"Reason": reason},
        "Task Metrics": {"Memory Bytes Spilled": memory, "Disk Bytes Spilled": disk, "JVM GC Time": gc},
        "Task Executor Metrics": {"JVMHeapMemory": heap, "TotalGCTime": jvm_gc},
    }
    return json.dumps(event)


def _block(block: str, disk: int) -> str:
    return json.dumps(
        {"Event": "SparkListenerBlockUpdated", "Block Updated Info": {"Block ID": block, "Disk Size": disk}}
    )


def test_spills_are_summed_over_finished_tasks_and_a_cut_line_is_skipped() -> None:
    lines = [
        json.dumps({"Event": "SparkListenerApplicationStart"}),
        json.dumps({"Event": "SparkListenerBlockManagerAdded", "Maximum Memory": 133_378_867}),
        _task_end(10 * MIB, 4 * MIB, 100, heap=300, jvm_gc=900),
        json.dumps({"Event": "SparkListenerTaskStart", "Task Metrics": {"Memory Bytes Spilled": 99}}),
        _task_end(6 * MIB, 2 * MIB, 50, reason="ExceptionFailure", heap=200, jvm_gc=1200),
        _block("rdd_7_0", 5 * MIB),
        _block("rdd_7_0", 0),  # unpersisted
        _block("rdd_7_1", 3 * MIB),
        _block("broadcast_2_piece0", MIB),  # not cached data
        '{"Event":"SparkListenerTaskEnd","Task Metrics":{"Memory Bytes Sp',  # the log of a killed process
    ]
    totals = real_sizes.spark_metrics(lines)
    assert totals["tasks"] == 2 and totals["failed_tasks"] == 1
    assert (totals["memory_spilled_bytes"], totals["disk_spilled_bytes"]) == (16 * MIB, 6 * MIB)
    assert totals["task_gc_ms"] == 150
    assert (totals["jvm_heap_peak_bytes"], totals["jvm_gc_ms"]) == (300, 1200)  # the largest seen, not a sum
    assert totals["unified_memory_bytes"] == 133_378_867
    assert totals["cached_on_disk_bytes"] == 8 * MIB


def test_event_logs_in_a_folder_are_read_and_a_compressed_one_is_counted_apart(tmp_path: Path) -> None:
    (tmp_path / "local-1").write_text(_task_end(MIB, 0, 1) + "\n")
    (tmp_path / "local-2.inprogress").write_text(_task_end(MIB, MIB, 1) + "\n")
    (tmp_path / "local-3.zstd").write_bytes(b"\x28\xb5\x2f\xfd")
    totals = real_sizes.event_log_metrics(tmp_path)
    assert (totals["tasks"], totals["memory_spilled_bytes"], totals["disk_spilled_bytes"]) == (2, 2 * MIB, MIB)
    assert (totals["event_logs"], totals["unreadable_event_logs"]) == (2, 1)


def test_the_cache_key_names_every_size_and_the_source_lives_in_the_project_cache() -> None:
    source = Source(30, 1_000_000, 128)
    assert source.key == "30d-1000000r-128b"
    assert source.end == "2024-01-30"
    assert source.bronze == ROOT / ".cache" / "bench-real" / "30d-1000000r-128b" / "bronze"
    assert Source(30, 1_000_000, 256).key != source.key != Source(31, 1_000_000, 128).key
    assert Source(3, 10, 128, start="2023-05-01").key == "3d-10r-128b-2023-05-01"


def test_scenarios_are_planned_job_first_and_chosen_by_name_or_pattern() -> None:
    scenarios = real_sizes.plan(["narrow", "dedupe"], ["2g", "512m"], ["1024"])
    assert [s.name for s in scenarios[:4]] == ["narrow-job-2g", "narrow-package-2g", "narrow-p1-2g", "narrow-mb1024-2g"]
    assert len(scenarios) == 16
    chosen = real_sizes.select(scenarios, "dedupe-*-512m, narrow-job-2g")
    assert [s.name for s in chosen] == [
        "narrow-job-2g",
        *(f"dedupe-{k}-512m" for k in ("job", "package", "p1", "mb1024")),
    ]
    with pytest.raises(SystemExit, match="names no scenario"):
        real_sizes.select(scenarios, "wide-job-2g")
    assert Scenario("narrow", "p1", "2g").cli_options() == ["--chunk-partitions", "1"]
    assert Scenario("dedupe", "mb512", "2g").cli_options() == ["--chunk-mb", "512"]
    assert Scenario("dedupe", "package", "2g").cli_options() == []


def test_the_package_command_is_the_real_cli_and_the_job_carries_the_pipeline(tmp_path: Path) -> None:
    source = Source(3, 10, 128)
    package = real_sizes.command(Scenario("narrow", "p1", "512m"), source, tmp_path / "job.json")
    assert Path(package[0]).name == "backfill" and package[1:3] == ["run", "bench_real"]
    assert package[3:] == ["--start", "2024-01-01", "--end", "2024-01-03", "--yes", "--chunk-partitions", "1"]
    job = real_sizes.command(Scenario("dedupe", "job", "512m"), source, tmp_path / "job.json")
    assert job[1] == "-c" and job[3:] == ["bench_real_dedupe", str(tmp_path / "job.json")]


def test_the_event_log_and_spark_scratch_space_stay_in_the_scenario_folder(tmp_path: Path) -> None:
    conf = real_sizes.spark_settings(tmp_path)
    assert conf["spark.eventLog.enabled"] == "true" and conf["spark.eventLog.compress"] == "false"
    assert conf["spark.eventLog.dir"] == (tmp_path / "events").resolve().as_uri()
    assert conf["spark.local.dir"] == str((tmp_path / "spark-local").resolve())


def test_the_cli_summary_and_the_last_error_line_are_read_from_the_output() -> None:
    text = (
        "12:00:01 | INFO | Flow run 'x' - 30 partitions in 15 chunk(s) (one Spark job and one Delta commit each)\n"
        "12:03:00 | INFO | Flow run 'x' - bench_real 2024-01-01..2024-01-30: 29 completed, 0 cached, 0 skipped, "
        "1 failed of 30; 29,000,000 rows written in 170.5s\n"
    )
    summary = real_sizes.cli_summary(text)
    assert (summary["completed"], summary["failed"], summary["flow_duration_s"]) == (29, 1, 170.5)
    assert summary["planned_chunks"] == 15
    assert real_sizes.cli_summary("nothing ran\n") == {}
    failed = "Traceback\n  File x\n: java.lang.OutOfMemoryError: Java heap space\n\n  at y\n"
    assert real_sizes.last_error(failed) == "java.lang.OutOfMemoryError: Java heap space"
    assert real_sizes.last_error("") == "(no output)"
    assert real_sizes.memory_mib("2g") == 2048 and real_sizes.memory_mib("512m") == 512


def _result(kind: str, memory: str, wall: float, rss: float, **more: Any) -> dict[str, Any]:
    spark = {"memory_spilled_bytes": more.pop("memory_spill", 0), "disk_spilled_bytes": more.pop("disk_spill", 0)}
    spark["cached_on_disk_bytes"] = more.pop("cached", 0)
    spark |= {"jvm_gc_ms": 2500, "unified_memory_bytes": 1_099_746_508 if memory == "2g" else 133_378_867}
    result = {"transform": "dedupe", "kind": kind, "driver_memory": memory, "wall_s": wall, "peak_rss_mib": rss}
    result |= {"peak_breakdown_mib": {"python": 130.0, "jvm": rss - 130.0}, "spark": spark, "returncode": 0}
    result |= {"load_before": "0.50 1.00 2.00", "others_cpu_pct": 3.0, "rows_ok": True, "ok": True}
    return result | more


def test_the_page_has_a_table_per_transform_with_ratios_to_the_job_at_the_same_memory() -> None:
    failed = {"returncode": 1, "ok": False, "rows_ok": False, "error": "java.lang.OutOfMemoryError: Java heap space"}
    scenarios = {
        "dedupe-job-2g": _result("job", "2g", 100.0, 1500.0, disk_spill=300 * MIB),
        "dedupe-package-2g": _result("package", "2g", 105.0, 1400.0, chunks=[[1, 3.0]] * 30),
        "dedupe-mb1024-2g": _result("mb1024", "2g", 101.0, 1450.0, chunks=[[7, 20.0], [8, 21.0]]),
        "dedupe-job-512m": _result("job", "512m", 80.0, 700.0, **failed),
        "dedupe-package-512m": _result("package", "512m", 150.0, 690.0, chunks=[[1, 5.0]] * 30, cached=140 * MIB),
    }
    source = {"key": "30d-1000000r-128b", "days": 30, "rows_per_day": 1_000_000, "payload_bytes": 128}
    source |= {"rows": 30_000_000, "bytes": 4 * 1024**3, "files": 30}
    machine = {"cpus": 2, "cpu_model": "AMD EPYC", "ram_gib": 24.0, "pyspark": "4.2.0", "prefect": "3.9.1"}
    results = {"source": source, "machine": machine, "scenarios": scenarios, "measured": "2026-12-07 15:00 UTC"}
    results |= {
        "defaults": {"chunk_mb": 256.0, "max_concurrency": 2},
        "commands": [".venv/bin/python -m bench.real_sizes"],
    }
    text = real_sizes.page(results)
    assert text.startswith("# Real sizes") and "2 cores" in text and "30,000,000 rows" in text
    assert "## dedupe (`bench_real_dedupe`)" in text and "## narrow" not in text
    table = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert [line.split(" | ")[0:2] for line in table] == [
        ["| job", "2g"],
        ["| package", "2g"],
        ["| mb1024", "2g"],
        ["| job", "512m"],
        ["| package", "512m"],
    ]
    assert "| 105.0 | 1.05x | 1,400 (130/1,270/0) | 0 / 0 | 2.5 | 30 (1 d) | 0.50 / 3% | ok |" in table[1]
    assert "2 (7–8 d)" in table[2]
    assert (
        "| 150.0 | – |" in table[4]
        and "| 0 / 0 (+140 cached) |" in table[4]
        and "exit 1: java.lang.OutOfMemoryError" in table[3]
    )
    assert "at 2g: wall 1.05x the job's (PASS" in text and "peak RSS 0.93x (PASS" in text
    assert "at 2g the one job spilled 300 MiB to disk, the package 0 MiB" in text
    assert (
        "at 512m the one job did not finish (exit 1: java.lang.OutOfMemoryError: Java heap space); the package did"
        in text
    )
    assert "2g: 1,049 MiB, 512m: 127 MiB" in text
