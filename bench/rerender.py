"""Re-render a benchmark page from its results file, measuring nothing: the suite that wrote the file
(``bench/run.py`` or ``bench/scale.py``) renders it. Above the renderer, so that ``bench/render.py``
imports no suite."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Re-render the page of a results file (which page: the suite that wrote it)."""
    from bench import run, scale

    source = Path((sys.argv[1:] if argv is None else argv)[0])
    results = json.loads(source.read_text())
    suite = scale.SUITE if "scale" in results.get("command", "") else run.SUITE
    results["targets"] = suite.targets(results)
    docs = source.parent / suite.docs.name if results["params"].get("quick") else suite.docs  # smoke runs stay out
    suite.render(results, docs)
    print(f"rendered {docs} from {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
