"""The package's layering, read from its import statements: dependencies point one way.

core (``bilm/``, ``runner``, ``layers``) <- application layer (``catalogue``, ``models``,
``embedding_spec``, front ends, ``corpus/``, ``training/``) <- ``cli/``. Checked statically over
every import of every module, also those under ``TYPE_CHECKING`` or inside functions (the
parser is ``tests/bilm/test_dependencies.py``'s), except the ``TYPE_CHECKING`` blocks of package
``__init__`` files, which only name the package's lazy exports for type checkers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.bilm.test_dependencies import imported_modules

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "flair_elmo_modes"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_imports(path: Path) -> set[str]:
    """The modules imported only inside ``if TYPE_CHECKING:`` blocks of ``path``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            for inner in node.body:
                if isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                    names.add(inner.module)
    return names


def dependencies(name: str) -> set[str]:
    """The package's modules that module ``name`` imports: ``from a import b`` names module ``a.b``
    when ``b`` is a module (and not ``a`` when every name is one), else ``a``."""
    path = MODULES[name]
    imported = imported_modules(path)
    if path.name == "__init__.py":
        imported -= _type_checking_imports(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in MODULES:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & MODULES.keys()
            imported |= submodules
            if len(submodules) == len(node.names) and not _imports_names_of(path, node.module):
                imported.discard(node.module)
    found = {target if target in MODULES else target.rsplit(".", 1)[0] for target in imported}
    found.discard(name)
    return found & MODULES.keys()


def _imports_names_of(path: Path, module: str) -> bool:
    """Whether some ``from module import x`` of ``path`` imports a name that is not a submodule."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == module:
            if any(f"{module}.{alias.name}" not in MODULES for alias in node.names):
                return True
    return False


GRAPH = {name: dependencies(name) for name in MODULES}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_the_package() -> None:
    # the checks below would pass on an empty graph: make sure they look at real edges
    assert "flair_elmo_modes.bilm.model" in GRAPH["flair_elmo_modes.runner"]
    assert "flair_elmo_modes.embedding_spec" in GRAPH["flair_elmo_modes.cli.embed"]


def test_no_import_cycles() -> None:
    assert import_cycles(GRAPH) == []


# ``python -m flair_elmo_modes`` is the command line's entry point, as ``cli/`` is.
OUTSIDE_THE_CLI = sorted(
    name for name in MODULES if not name.startswith("flair_elmo_modes.cli") and name != "flair_elmo_modes.__main__"
)


@pytest.mark.parametrize("name", OUTSIDE_THE_CLI)
def test_nothing_outside_the_cli_imports_it(name: str) -> None:
    assert not {module for module in GRAPH[name] if module.startswith("flair_elmo_modes.cli")}


# The core: what every layer above builds on. It never imports the layers above it; only the
# utilities beside it (atomic writes, checksums) and the package's version.
CORE = ("flair_elmo_modes.bilm", "flair_elmo_modes.runner", "flair_elmo_modes.layers")
UTILITIES = {"flair_elmo_modes", "flair_elmo_modes.atomic", "flair_elmo_modes.checksums"}


def test_the_utilities_import_only_each_other_and_the_core() -> None:
    utilities = UTILITIES - {"flair_elmo_modes"}
    for name in utilities:
        assert all(module in utilities or module.startswith(CORE) for module in GRAPH[name]), name


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name.startswith(CORE)))
def test_the_core_imports_only_the_core(name: str) -> None:
    outside = {module for module in GRAPH[name] if not module.startswith(CORE)}
    assert outside <= UTILITIES, f"{name} imports {sorted(outside)}"
