"""Benchmark harness for prefect-backfill: the package against the seed controller and the single job
(``bench/run.py``, ``make bench``), and at scale (``bench/scale.py``, ``make bench-scale``).

- ``harness``: one scenario process measured from outside (time, RSS of its tree, CPU, load); ``driver``:
  a group's scenarios run one after another into ``results.json`` and its page;
- ``run``, ``scale``: the two groups' scenarios (sizes, plan, targets); ``child``: the measured process
  (``python -m bench.child KIND``), with ``readback``, ``profile_chunk``, ``trust_cost``, ``seed`` (the seed
  port), ``datagen`` and ``pipelines`` (imported through ``BACKFILL_PIPELINE_MODULES`` like a user's);
- ``render``: the one renderer (words in ``templates/``), with ``page_benchmarks`` and ``page_scale``;
  ``rerender``: a page again from its results file;
- ``crash_matrix``: the crash-recovery test's harness, run many times;
- ``control_plane``: what one backfill asks of Prefect (requests, task runs, events, artifacts, ledger commits),
  counted by ``counting_proxy``, a proxy in front of a real ``prefect server start``.

The engines without data work that tests and benchmarks share are in :mod:`prefect_backfill.testing`.
"""
