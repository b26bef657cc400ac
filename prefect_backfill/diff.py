"""The before/after diff of every partition a backfill overwrites: did the fix do what was meant?

Per partition, recorded in the ledger's ``diff`` column (JSON) with its COMPLETE event:

- rows before and after;
- sums of the numeric columns (or the pipeline's ``diff_columns``) before and after: "amount_usd up 10 %";
- with a declared ``key``, how many keys were added, removed and changed (same key, other values);
- the columns the partition gained or whose type widened, against the columns its previous write recorded
  in the ledger (a new version that changes the schema: :mod:`prefect_backfill.schema_change`).

"After" comes from the grouped aggregation the chunk runs anyway (no extra pass); "before" is one
aggregation over the old rows of the chunk's partitions, read as of the version the commit replaces
(Delta time travel), reading only the partition column and the summed columns; the key diff is one
more job (a join of old and new keys with a hash of the other columns), only when a key is declared.
Pure here: the engine computes the numbers, this module shapes, totals and prints them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "KeyChanges",
    "PartitionDiff",
    "changed_columns",
    "column_changes",
    "diff_markdown",
    "numeric_columns",
    "rows_change",
    "run_diffs",
    "table_rows",
    "totals",
]

_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double", "decimal", "byte", "short", "long", "integer")


def numeric_columns(dtypes: Sequence[tuple[str, str]], exclude: Iterable[str] = ()) -> tuple[str, ...]:
    """The columns worth summing, from ``DataFrame.dtypes`` (name, type name)."""
    skip = set(exclude)
    return tuple(name for name, kind in dtypes if name not in skip and kind.split("(")[0] in _NUMERIC)


@dataclass(frozen=True, slots=True)
class KeyChanges:
    added: int
    removed: int
    changed: int


@dataclass(frozen=True, slots=True)
class PartitionDiff:
    """One partition's content before and after its overwrite."""

    partition: str
    rows_before: int
    rows_after: int
    sums: Mapping[str, tuple[float | None, float | None]] = field(default_factory=dict)
    keys: KeyChanges | None = None
    # What the write changed in the partition's columns ("adds fx_rate (double)"): from the ledger's
    # recorded shapes by :func:`run_diffs`, not stored in the diff's JSON.
    columns: tuple[str, ...] = ()

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "rows": [self.rows_before, self.rows_after],
            "sums": {k: list(v) for k, v in self.sums.items()},
        }
        if self.keys is not None:
            data["keys"] = {"added": self.keys.added, "removed": self.keys.removed, "changed": self.keys.changed}
        return json.dumps(data, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, partition: str, text: str) -> PartitionDiff:
        data = json.loads(text)
        keys = data.get("keys")
        return cls(
            partition=partition,
            rows_before=int(data["rows"][0]),
            rows_after=int(data["rows"][1]),
            sums={k: (v[0], v[1]) for k, v in data.get("sums", {}).items()},
            keys=KeyChanges(**keys) if keys else None,
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "partition": self.partition,
            "rows_before": self.rows_before,
            "rows_after": self.rows_after,
            "sums": {k: {"before": b, "after": a, "change": _change(b, a)} for k, (b, a) in self.sums.items()},
        }
        if self.keys is not None:
            out["keys"] = {"added": self.keys.added, "removed": self.keys.removed, "changed": self.keys.changed}
        if self.columns:
            out["columns"] = list(self.columns)
        return out


def _change(before: float | None, after: float | None) -> float | None:
    """Relative change (0.1 = +10 %), None where it has no meaning (no old value, old value 0)."""
    if before is None or after is None or before == 0:
        return None
    return (after - before) / abs(before)


def totals(diffs: Sequence[PartitionDiff]) -> PartitionDiff:
    """All partitions together (the artifact's last row and ``backfill diff``'s summary)."""
    sums: dict[str, tuple[float | None, float | None]] = {}
    for d in diffs:
        for column, (before, after) in d.sums.items():
            b, a = sums.get(column, (None, None))
            sums[column] = (_add(b, before), _add(a, after))
    keyed = [d.keys for d in diffs if d.keys is not None]
    keys = (
        KeyChanges(sum(k.added for k in keyed), sum(k.removed for k in keyed), sum(k.changed for k in keyed))
        if keyed
        else None
    )
    reshaped = sum(1 for d in diffs if d.columns)
    columns = (f"{reshaped:,} partition(s)",) if reshaped else ()
    return PartitionDiff(
        "total", sum(d.rows_before for d in diffs), sum(d.rows_after for d in diffs), sums, keys, columns
    )


def _add(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else a + b


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    whole = round(value)
    if abs(value - whole) <= 1e-9 * max(1.0, abs(value)):  # a sum of cents in floating point: 1,001,710.0000001
        return f"{whole:,}"
    return f"{value:,.2f}"


def _pct(before: float | None, after: float | None) -> str:
    """`` (+10.0%)``; nothing when unchanged (floating point noise of a sum included)."""
    change = _change(before, after)
    if change is None or abs(change) < 5e-4:
        return ""
    return f" ({change:+.1%})"


def rows_change(d: PartitionDiff) -> str:
    """``1,000 → 1,010 (+1.0%)``: the rows of a partition (or the totals) before and after."""
    return f"{d.rows_before:,} → {d.rows_after:,}{_pct(d.rows_before, d.rows_after)}"


def changed_columns(d: PartitionDiff) -> list[str]:
    """The sums of ``d`` that changed (as :func:`_pct` sees a change: floating point noise is not one),
    each as ``column: before → after (change)``, then the key changes if any were counted."""
    out = []
    for column in sorted(d.sums):
        before, after = d.sums[column]
        if _pct(before, after) or (before is None) != (after is None):
            out.append(f"{column}: {_num(before)} → {_num(after)}{_pct(before, after)}")
    if d.keys is not None and (d.keys.added or d.keys.removed or d.keys.changed):
        out.append(f"keys: +{d.keys.added:,} −{d.keys.removed:,} changed {d.keys.changed:,}")
    if d.columns:
        out.append("columns: " + "; ".join(d.columns))
    return out


def table_rows(diffs: Sequence[PartitionDiff], limit: int = 60) -> tuple[list[str], list[list[str]]]:
    """Header and rows (the first ``limit`` partitions, then the totals) for the UI and the CLI."""
    columns = sorted({c for d in diffs for c in d.sums})
    keyed = any(d.keys is not None for d in diffs)
    reshaped = any(d.columns for d in diffs)
    head = ["partition", "rows", *columns]  # each cell: before → after (change)
    if keyed:
        head += ["keys +", "keys −", "keys changed"]
    if reshaped:
        head.append("columns")

    def row(d: PartitionDiff) -> list[str]:
        cells = [d.partition, rows_change(d)]
        for c in columns:
            before, after = d.sums.get(c, (None, None))
            cells.append(f"{_num(before)} → {_num(after)}{_pct(before, after)}")
        if keyed:
            k = d.keys
            cells += [f"{k.added:,}", f"{k.removed:,}", f"{k.changed:,}"] if k is not None else ["", "", ""]
        if reshaped:
            cells.append("; ".join(d.columns))
        return cells

    rows = [row(d) for d in diffs[:limit]]
    if len(diffs) > limit:
        rows.append([f"… {len(diffs) - limit} more", *[""] * (len(head) - 1)])
    if diffs:
        rows.append(row(totals(diffs)))
    return head, rows


def diff_markdown(title: str, diffs: Sequence[PartitionDiff], limit: int = 60) -> str:
    """A table per partition (the first ``limit``) and the totals, for the Prefect UI."""
    head, rows = table_rows(diffs, limit)
    lines = [f"# {title}", "", "Each cell: before → after (change).", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_diffs(events: Iterable[Mapping[str, Any]], run_id: str) -> list[PartitionDiff]:
    """The diffs a run recorded: its latest COMPLETE event with a diff per partition, by partition; with
    the columns each partition gained (or whose type widened) since the write before the run's
    (:func:`column_changes`)."""
    found: dict[str, PartitionDiff] = {}
    before: dict[str, str | None] = {}  # each partition's shape before the run's first write of it
    shape: dict[str, str | None] = {}  # the latest shape recorded, as the events go by
    for event in events:  # oldest first: a later attempt's event wins
        key = str(event.get("partition"))
        if event.get("status") != "COMPLETE":
            continue
        if event.get("run_id") == run_id:
            before.setdefault(key, shape.get(key))
            if event.get("diff"):
                found[key] = replace(
                    PartitionDiff.from_json(key, str(event["diff"])),
                    columns=column_changes(before[key], event.get("shape")),
                )
        if event.get("shape"):  # (a COMPLETE served from the cache wrote nothing and records no shape)
            shape[key] = event.get("shape")
    return [found[k] for k in sorted(found)]


def column_changes(old: str | None, new: str | None) -> tuple[str, ...]:
    """What writing shape ``new`` over shape ``old`` (as the ledger records them) changed in the columns
    ("adds fx_rate (double)", "widens quantity from int to bigint"); nothing when either is unknown."""
    from prefect_backfill.schema_change import compare, recorded_columns

    was, now = recorded_columns(old), recorded_columns(new)
    if was is None or now is None:
        return ()
    return tuple(str(c) for c in compare(was, now).changes)


def diffed_run(events: Sequence[Mapping[str, Any]], run_id: str | None, pipeline: str) -> str:
    """The run whose diff ``backfill diff`` shows: ``run_id`` (the full id, or 8+ first characters of
    exactly one run) among the runs that recorded a diff, else the latest of them."""
    from prefect_backfill.errors import InvalidRequestError

    runs = [e["run_id"] for e in events if e["status"] == "COMPLETE" and e.get("diff")]  # oldest first
    if not runs:
        raise InvalidRequestError(f"{pipeline}: no run has recorded a diff yet: run `backfill run {pipeline} …` first")
    if run_id is None:
        return str(runs[-1])
    matches = sorted({r for r in runs if r == run_id or (len(run_id) >= 8 and r.startswith(run_id))})
    if len(matches) != 1:
        known = ", ".join(sorted(set(runs), key=runs.index)[-5:])
        what = "matches several runs" if matches else "is not a run of this pipeline with a recorded diff"
        raise InvalidRequestError(f"--run {run_id} {what}: give one of {known}")
    return str(matches[0])
