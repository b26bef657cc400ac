"""Import contracts (design §3): the layers import only downward, checked by reading the source.

Two contracts, listed in the block below (the one place to edit when a module is renamed):

- **pure modules**: importing one of :data:`PURE_MODULES` must not load Prefect, Spark or delta-rs
  (:data:`FORBIDDEN_IN_PURE`), directly or through any module of this project it imports;
- **core below the top level**: no module of :data:`CORE` imports :data:`ABOVE_CORE` (``flows``, ``tasks``,
  and ``deployments``, which sits beside them on top of the core).

How imports are read (with ``ast``: nothing is imported, so the test needs none of those packages):

- every ``import`` / ``from … import`` statement anywhere in a file counts, **including function-local
  (lazy) ones**: a lazy ``from pyspark.sql import functions`` inside a pure module still makes it impure,
  since calling that function needs Spark; a lazy import moves the cost, not the dependency. So do
  ``importlib.import_module("a.constant")`` calls (a name built at run time cannot be read, and is not);
- imports under ``if TYPE_CHECKING:`` do **not** count: they never run, they only name a type for mypy
  (``checks.Custom`` is typed as a function of a Spark DataFrame without loading Spark);
- an import names one module, as in import-linter: ``import a.b`` names ``a.b``; ``from a import b``
  names the module ``a.b`` if there is one, else ``a``;
- imports are followed **transitively** through this project's modules (``prefect_backfill``, ``flows``,
  ``tasks``, ``deployments``): a pure module importing a module that (even lazily) imports pyspark is
  impure;
- importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b`` first: what those load when they run
  (their eager imports, transitively) counts too, so a package ``__init__`` importing prefect at its top
  would make every pure module below it impure. Their lazy imports, and the lazy imports of the modules they
  re-export, do not: ``prefect_backfill/__init__`` re-exports ``checks``, which builds Spark columns lazily,
  and that makes no other module impure.

Violations that exist today are listed by name in :data:`KNOWN_IMPURE` and :data:`KNOWN_CORE_ABOVE`, with
why: the test passes with them and fails on any new one. Each known entry is also its own strict xfail
(``test_known_violation_still_exists``): once it is fixed that test fails until the entry is deleted, so the
list never outlives the violations it excuses.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# --- The contracts ------------------------------------------------------------------------------------
# Role in design §3 -> module. A rename of one of them is a one-line change here.
PURE_MODULES: dict[str, str] = {
    "planning": "prefect_backfill.planning",
    "partitions": "prefect_backfill.partitions",
    "chunking": "prefect_backfill.chunking",
    "undo planning": "prefect_backfill.undo_planning",  # the pure half; prefect_backfill.restoring gathers and restores
    "drift": "prefect_backfill.drift",
    "diff": "prefect_backfill.diff",
    "calendar": "prefect_backfill.calendar",
    "ETA": "prefect_backfill.eta",
    "canary selection": "prefect_backfill.canary",
    "checks' definitions": "prefect_backfill.checks",
    "the request": "prefect_backfill.request",  # the CLI builds its options from it at start-up
    "table snapshots": "prefect_backfill.snapshots",
    "run results": "prefect_backfill.results",
    "lease holders": "prefect_backfill.holders",  # who holds a lease: a process on a host, no I/O library
    "the window": "prefect_backfill.window",
    "cascade declarations and mappings": "prefect_backfill.cascade",
}
# Top-level packages a pure module may not load: Prefect (and its Dask runner), Spark (pyspark, and delta-spark,
# whose package is `delta`), delta-rs.
FORBIDDEN_IN_PURE = ("prefect", "prefect_dask", "pyspark", "delta", "deltalake")
CORE = "prefect_backfill"
ABOVE_CORE = ("flows", "tasks", "deployments")
PROJECT_PACKAGES = (CORE, *ABOVE_CORE)

# Known violations today: (pure module, the project module whose import loads it, forbidden package) -> why.
# Another engineer is restructuring these; delete an entry when its violation is gone (its xfail says so).
KNOWN_IMPURE: dict[tuple[str, str, str], str] = {}
# Known violations today: (core module, the module above the core it imports) -> why.
# (`backfill run` loads the flow by the entrypoint prefect.yaml deploys, run_state.load_flow, as a worker does.)
KNOWN_CORE_ABOVE: dict[tuple[str, str], str] = {}
# ---------------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Import:
    importer: str  # a project module
    target: str  # a project module, or the top-level name of a package outside the project
    line: int
    lazy: bool  # inside a function
    package: bool = False  # not a statement: importing ``importer`` runs ``target``'s ``__init__`` first

    @property
    def internal(self) -> bool:
        return self.target.split(".")[0] in PROJECT_PACKAGES

    def describe(self) -> str:
        if self.package:
            return f"importing {self.importer} runs {self.target}/__init__.py"
        return f"{self.importer}:{self.line} imports {self.target}" + (" (lazily, in a function)" if self.lazy else "")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by dotted name (a package by its ``__init__``)."""
    modules = {}
    for package in PROJECT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it is inside a function, skipping ``if TYPE_CHECKING:`` bodies (not their
    ``else``)."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, lazy = stack.pop()
        yield node, lazy
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            children: list[ast.AST] = [node.test, *node.orelse]
        else:
            children = list(ast.iter_child_nodes(node))
        stack.extend((child, inner) for child in children)


def _names(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The dotted names an import node names: ``import a.b`` names ``a.b``; ``from a import b`` names the
    module ``a.b`` if there is one, else ``a`` (``b`` is a name defined in ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = module.split(".") if is_package else module.split(".")[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
    if (  # importlib.import_module("a.constant")
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute | ast.Name)
        and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return [node.args[0].value]
    return []


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of ``module``, statement by statement: a project module by its dotted name, anything
    else by its top-level package."""
    found: list[Import] = []
    for node, lazy in _statements(ast.parse(path.read_text(), str(path))):
        line = getattr(node, "lineno", 0)
        for name in dict.fromkeys(_names(node, module, path.name == "__init__.py", modules)):
            top = name.split(".")[0]
            if top == "__future__":
                continue
            if top not in PROJECT_PACKAGES:
                found.append(Import(module, top, line, lazy))
                continue
            target = name
            while target not in modules and "." in target:  # `import a.b.name`: the nearest module
                target = target.rpartition(".")[0]
            if target != module:
                found.append(Import(module, target, line, lazy))
    return found


def import_graph(root: Path = ROOT) -> dict[str, list[Import]]:
    modules = project_modules(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _packages(module: str) -> list[str]:
    """The packages whose ``__init__`` Python runs before ``module``: ``a.b.c`` -> ``a``, ``a.b``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def impurities(graph: dict[str, list[Import]], module: str) -> dict[tuple[str, str, str], list[Import]]:
    """Forbidden packages ``module`` depends on: (module, the project module importing it, package) -> the
    chain of imports from ``module`` to it.

    Two walks: the code's imports (lazy ones included) from ``module``; then, from the package
    ``__init__``s Python runs on the way to any of those modules, what they load when run (their eager
    imports, and the ``__init__``s those run in turn): a package ``__init__`` importing prefect at its top
    makes every module below it load prefect; one naming a module that imports it lazily does not."""
    found: dict[tuple[str, str, str], list[Import]] = {}

    def walk(chains: dict[str, list[Import]], eager_only: bool) -> dict[str, list[Import]]:
        queue = deque(chains)
        while queue:
            current = queue.popleft()
            edges = graph[current]
            if eager_only:
                edges = [i for i in edges if not i.lazy] + [
                    Import(current, p, 0, lazy=False, package=True) for p in _packages(current)
                ]
            for imp in edges:
                if not imp.internal:
                    if imp.target in FORBIDDEN_IN_PURE:
                        found.setdefault((module, current, imp.target), [*chains[current], imp])
                elif imp.target in graph and imp.target not in chains:
                    chains[imp.target] = [*chains[current], imp]
                    queue.append(imp.target)
        return chains

    code = walk({module: []}, eager_only=False)
    run_first: dict[str, list[Import]] = {}
    for reached, chain in code.items():  # nearest first: the chain shown is the shortest
        for package in _packages(reached):
            if package in graph and package not in code:
                run_first.setdefault(package, [*chain, Import(reached, package, 0, lazy=False, package=True)])
    walk(run_first, eager_only=True)
    return found


def core_above(graph: dict[str, list[Import]]) -> dict[tuple[str, str], Import]:
    """Core modules importing a module above the core: (importer, imported) -> the import. Direct imports are
    enough: any path from the core to ``flows``/``tasks`` leaves the core by one such import."""
    return {
        (imp.importer, imp.target): imp
        for module, imports in graph.items()
        if module.split(".")[0] == CORE
        for imp in imports
        if imp.target.split(".")[0] in ABOVE_CORE
    }


def _explain(chain: list[Import]) -> str:
    return " -> ".join(imp.describe() for imp in chain)


# --- Tests ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Import]]:
    return import_graph()


@pytest.mark.parametrize("role", PURE_MODULES)
def test_every_pure_module_exists(role: str, graph: dict[str, list[Import]]) -> None:
    """A renamed module must be renamed here too, or its contract would pass by checking nothing."""
    assert PURE_MODULES[role] in graph, f"{role}: {PURE_MODULES[role]} is gone; update PURE_MODULES in {__file__}"


def test_pure_modules_load_neither_prefect_nor_spark_nor_deltalake(graph: dict[str, list[Import]]) -> None:
    new = {
        key: chain
        for module in PURE_MODULES.values()
        if module in graph
        for key, chain in impurities(graph, module).items()
        if key not in KNOWN_IMPURE
    }
    assert not new, "pure modules that now load a forbidden package:\n" + "\n".join(
        f"- {module} loads {package}: {_explain(chain)}" for (module, _, package), chain in sorted(new.items())
    )


def test_the_core_imports_neither_flows_nor_tasks(graph: dict[str, list[Import]]) -> None:
    new = {key: imp for key, imp in core_above(graph).items() if key not in KNOWN_CORE_ABOVE}
    assert not new, "the core imports the level above it:\n" + "\n".join(f"- {imp.describe()}" for imp in new.values())


_KNOWN = [
    *(pytest.param("pure", key, id=f"{key[0]}-via-{key[1]}-loads-{key[2]}") for key in KNOWN_IMPURE),
    *(pytest.param("core", key, id=f"{key[0]}-imports-{key[1]}") for key in KNOWN_CORE_ABOVE),
]


@pytest.mark.parametrize(("contract", "key"), _KNOWN)
@pytest.mark.xfail(
    strict=True, raises=AssertionError, reason="a known violation: delete its entry from KNOWN_* once it is fixed"
)
def test_known_violation_still_exists(contract: str, key: tuple[str, ...], graph: dict[str, list[Import]]) -> None:
    """Fails (xfail) while the known violation exists; passes, which strict xfail reports as a failure,
    once it is gone: then delete its entry."""
    present = key in impurities(graph, key[0]) if contract == "pure" else key in core_above(graph)
    assert not present, f"still there: {key}"
