"""One commit at a time per table, and a commit conflict retried without anything else: the rule of
:mod:`prefect_backfill.engine.committer`, with writes that stand for Delta's (the real ones run in
``tests/integration/test_data_column_targets.py``)."""

from __future__ import annotations

import threading
import time

import pytest

from prefect_backfill.engine.committer import Committer
from prefect_backfill.errors import CommitConflictError, TransientEngineError


def test_a_conflict_commits_again_and_nothing_else_does() -> None:
    committer = Committer(attempts=3, pause=0.01)
    tries: list[int] = []

    def conflicts_twice() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise CommitConflictError("a concurrent WRITE added data to table")
        return "committed"

    assert committer.commit("t", conflicts_twice) == "committed" and len(tries) == 3

    tries.clear()
    with pytest.raises(CommitConflictError):  # the last attempt's conflict is the chunk's failure
        committer.commit("t", lambda: (tries.append(1), conflicts_always())[1])
    assert len(tries) == 3

    tries.clear()

    def fails() -> None:
        tries.append(1)
        raise TransientEngineError("lost executor")

    with pytest.raises(TransientEngineError):  # not a conflict: not the committer's to retry
        committer.commit("t", fails)
    assert len(tries) == 1


def conflicts_always() -> None:
    raise CommitConflictError("a concurrent WRITE added data to table")


def test_commits_to_one_table_never_overlap_and_to_two_tables_do() -> None:
    committer = Committer()
    inside: dict[str, int] = {"a": 0, "b": 0}
    most = {"a": 0, "b": 0, "both": 0}
    guard = threading.Lock()

    def write(table: str) -> None:
        with guard:
            inside[table] += 1
            most[table] = max(most[table], inside[table])
            most["both"] = max(most["both"], inside["a"] + inside["b"])
        time.sleep(0.05)
        with guard:
            inside[table] -= 1

    threads = [
        threading.Thread(target=committer.commit, args=(t, lambda t=t: write(t))) for t in ("a", "a", "a", "b", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most["a"] == 1 and most["b"] == 1 and most["both"] == 2
