"""Why a partition runs, and why it is skipped: typed reasons.

A reason is its kind (an enum: what code acts on), the phrase the plan prints and counts by (its
``head``), and this partition's own detail, printed in parentheses. It is also its text (a ``str``,
as a ``StrEnum`` member is), so plans print, serialise (``backfill plan --json``) and compare as they
always did; code that acts on a reason reads its ``kind`` and never its words, so rewording a phrase
changes no behaviour.
"""

from __future__ import annotations

import enum
from typing import Any, NoReturn, Self

__all__ = ["DueKind", "DueReason", "Reason", "SkipKind", "SkipReason"]


class DueKind(enum.StrEnum):
    """Why a partition is due."""

    REPROCESS_ALL = "reprocess_all"
    FAILED = "failed"
    NEVER_RUN = "never_run"
    INTERRUPTED = "interrupted"  # its latest event is RUNNING or PENDING of a run that ended
    STALE = "stale"  # complete, by another transform version
    UNDONE = "undone"  # restored by `backfill undo`: a cache record describes what was undone
    SOURCE_UNRECORDED = "source_unrecorded"  # complete, but its source content was not recorded
    SOURCE_CHANGED = "source_changed"
    TARGET_DRIFTED = "target_drifted"  # the target no longer holds what was written (prefect_backfill.drift)
    UPSTREAM_CHANGED = "upstream_changed"  # marked STALE: an upstream run rewrote what it reads (cascade)


class SkipKind(enum.StrEnum):
    """Why a partition is not run."""

    COMPLETE = "complete"  # complete for this version, ledger and tables agree
    NOT_FAILED = "not_failed"  # reprocess=failed, and it did not fail
    EXCLUDED = "excluded"  # by the request
    DONE_MEANWHILE = "done_meanwhile"  # another run completed it after this run was planned
    HELD = "held"  # another live run holds it
    CACHED = "cached"  # served from its cache record
    CANARY = "canary"  # written first, at the canary gate


#: The phrase a reason prints when its maker gives none (reasons whose phrase names a version or a drift
#: give their own ``head``).
_PHRASES: dict[DueKind | SkipKind, str] = {
    DueKind.REPROCESS_ALL: "reprocess all",
    DueKind.FAILED: "failed",
    DueKind.NEVER_RUN: "never run",
    DueKind.INTERRUPTED: "interrupted",
    DueKind.STALE: "stale",
    DueKind.UNDONE: "undone",
    DueKind.SOURCE_UNRECORDED: "source content not recorded",
    DueKind.SOURCE_CHANGED: "source changed since it was written",
    DueKind.TARGET_DRIFTED: "target drifted",
    DueKind.UPSTREAM_CHANGED: "upstream changed since it was written",
    SkipKind.COMPLETE: "complete",
    SkipKind.NOT_FAILED: "not failed",
    SkipKind.EXCLUDED: "excluded by request",
    SkipKind.DONE_MEANWHILE: "completed by another run since this run was planned",
    SkipKind.HELD: "held by another live run",
    SkipKind.CACHED: "complete",
    SkipKind.CANARY: "canary",
}


class Reason(str):
    """A reason: ``kind``, ``head`` (the phrase, counted by the plan) and ``detail``; as text,
    ``"head (detail)"`` (or the head alone). Immutable, like the ``str`` it is."""

    kind: DueKind | SkipKind
    head: str
    detail: str

    def __new__(cls, kind: DueKind | SkipKind, detail: str = "", *, head: str | None = None) -> Self:
        phrase = _PHRASES[kind] if head is None else head
        self = super().__new__(cls, f"{phrase} ({detail})" if detail else phrase)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "head", phrase)
        object.__setattr__(self, "detail", detail)
        return self

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled with its kind, not as a bare str
        return (_rebuild, (type(self), self.kind, self.detail, self.head))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind!r}, {str(self)!r})"


def _rebuild(cls: type[Reason], kind: DueKind | SkipKind, detail: str, head: str) -> Reason:
    return cls(kind, detail, head=head)


class DueReason(Reason):
    """Why a partition runs (:class:`DueKind`)."""

    kind: DueKind

    def __new__(cls, kind: DueKind, detail: str = "", *, head: str | None = None) -> Self:
        return super().__new__(cls, kind, detail, head=head)


class SkipReason(Reason):
    """Why a partition is skipped (:class:`SkipKind`)."""

    kind: SkipKind

    def __new__(cls, kind: SkipKind, detail: str = "", *, head: str | None = None) -> Self:
        return super().__new__(cls, kind, detail, head=head)
