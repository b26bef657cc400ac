"""The renderer of every benchmark page: the words live in ``bench/templates/<page>.md``, the numbers come
from ``results.json``, so a page can be re-rendered without measuring anything (``bench/rerender.py``)::

    .venv/bin/python -m bench.rerender bench/out/results.json          # docs/benchmarks.md
    .venv/bin/python -m bench.rerender bench/out/scale/results.json    # docs/scale-benchmarks.md (+ figure)

A template is a sequence of named sections (a line ``<!-- name -->`` starts one), each a ``str.format``
string; a page's code picks the sections that apply and gives each its values, so wording chosen by the
numbers (a note that holds only when a ratio is over a threshold) is a choice between sections, not an
f-string in code. Tables: the header is in the template, the rows come from :func:`rows`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Page", "num", "ok", "rows", "verdict"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


class Page:
    """A page being assembled from the sections of one template."""

    def __init__(self, template: str) -> None:
        parts = re.split(r"^<!-- (\w+) -->\n", (TEMPLATES / f"{template}.md").read_text(), flags=re.MULTILINE)
        self.sections = dict(zip(parts[1::2], parts[2::2], strict=True))
        self.parts: list[str] = []

    def add(self, section: str, **values: Any) -> Page:
        self.parts.append(self.sections[section].format_map(values))
        return self

    def text(self, name: str, **values: Any) -> str:
        """A section filled in, for use inside another (a sentence, a table row)."""
        return self.sections[name].format_map(values).strip()

    def raw(self, text: str) -> Page:
        self.parts.append(text if text.endswith("\n") else text + "\n")
        return self

    def render(self) -> str:
        return "".join(self.parts).rstrip() + "\n"


def rows(cells: Iterable[Sequence[Any]]) -> str:
    """Markdown table rows (the header and its rule are in the template)."""
    return "\n".join("| " + " | ".join(str(c) for c in row) + " |" for row in cells)


def num(value: Any, spec: str = ".1f", scale: float = 1.0) -> str:
    """A number as the tables show it; "–" for none."""
    return "–" if value is None else format(float(value) * scale, spec)


def ok(run: Mapping[str, Any] | None) -> bool:
    """A scenario that ran to its end, exit code 0, no failed partition."""
    return bool(run) and bool(run.get("ok", True)) and run.get("returncode") == 0  # type: ignore[union-attr]


def verdict(passed: bool | None) -> str:
    return "n/a" if passed is None else "PASS" if passed else "FAIL"
