"""Benchmark harness for prefect-backfill: the seed controller, the package, and the 'wrong approach'.

A package (not loose scripts) so that scenario subprocesses can import ``bench.pipelines`` through
``BACKFILL_PIPELINE_MODULES`` exactly as a user's pipeline module would be imported.
"""
