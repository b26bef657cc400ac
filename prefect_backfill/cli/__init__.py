"""``backfill``: run, plan and inspect backfills from a terminal.

Ranges are inclusive: ``--start 2024-01-01 --end 2024-06-30`` is 182 daily partitions. Every error the
user can cause prints one line (``error: …``, on stderr) and exits non-zero; nothing is written before
the request is valid. Usage errors (bad flags, values, dates, unknown pipeline, bad settings) exit 2;
anything unexpected exits 1 with the error's type and first line (``backfill --verbose …`` prints the
traceback). ``run`` exits with what happened to the partitions (:data:`~prefect_backfill.errors.EXIT_CODES`).

One module per command group (:mod:`.plan`, :mod:`.run`, :mod:`.status`, :mod:`.undo`, :mod:`.review`,
:mod:`.admin`), each registering its commands on the shared :data:`.app.app`; :mod:`.entry` is the
process around them (errors, exit codes, signals). Importing this package registers every command.
"""

from __future__ import annotations

import importlib

from prefect_backfill.cli.app import app
from prefect_backfill.cli.entry import main, run_cli

# Registered in this order, which is the order `backfill --help` lists them in.
for _group in ("plan", "run", "status", "undo", "review", "admin"):
    importlib.import_module(f"prefect_backfill.cli.{_group}")

__all__ = ["app", "main", "run_cli"]
