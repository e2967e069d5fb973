"""The layering of ``flair_elmo_modes.bilm``: no module of it imports Flair; only ``hdf5.py`` imports h5py;
no import circle among its modules (``bilm/fast/`` included) or through the modules they import.

Checked statically (every import statement and ``import_module`` call of every file, also those
under ``TYPE_CHECKING`` or inside functions) and, for Flair, also by importing every module in a
fresh interpreter and looking at ``sys.modules`` (which also sees imports made through other modules).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "flair_elmo_modes"
BILM = PACKAGE / "bilm"
BILM_FILES = sorted(BILM.rglob("*.py"))


def module_name(path: Path, root: Path = REPO) -> str:
    """``flair_elmo_modes/bilm/fast/kernels.py`` -> ``flair_elmo_modes.bilm.fast.kernels`` (relative to
    ``root``; a package's ``__init__.py``: the package)."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path, root: Path = REPO) -> str:
    """The package that the relative imports of ``path`` resolve against."""
    name = module_name(path, root)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _from_module(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` statement imports from, relative ones resolved against ``package``."""
    if node.level == 0:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def _import_module_call(node: ast.AST) -> str | None:
    """The constant module name of an ``import_module("...")`` or ``__import__("...")`` call."""
    if (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def imported_modules(path: Path, package: str = "flair_elmo_modes.bilm") -> set[str]:
    """Absolute names of the modules that ``path`` (a module of ``package``) imports anywhere in its
    code; for ``from m import n``: ``m``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(_from_module(node, package))
        elif (name := _import_module_call(node)) is not None:
            names.add(name)
    return names


def top_level(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_the_static_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text(
        "import flair.data\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from transformers import AutoModel\n"
        "def f():\n    import h5py\n    return importlib.import_module('numpy.linalg')\n"
        "from . import lstm\nfrom .options import ElmoOptions\n",
        encoding="utf-8",
    )
    assert imported_modules(source) == {
        "flair.data",
        "typing",
        "transformers",
        "h5py",
        "numpy.linalg",
        "flair_elmo_modes.bilm",
        "flair_elmo_modes.bilm.options",
    }


def bilm_path(path: Path) -> str:
    return path.relative_to(BILM).as_posix()


@pytest.mark.parametrize("path", BILM_FILES, ids=bilm_path)
def test_no_bilm_module_imports_flair(path: Path) -> None:
    assert not top_level(imported_modules(path, package_of(path))) & {"flair", "transformers"}


@pytest.mark.parametrize("path", BILM_FILES, ids=bilm_path)
def test_only_hdf5_imports_h5py_within_bilm(path: Path) -> None:
    if path != BILM / "hdf5.py":
        assert "h5py" not in top_level(imported_modules(path, package_of(path)))


def test_hdf5_is_the_h5py_module() -> None:
    assert "h5py" in top_level(imported_modules(BILM / "hdf5.py"))


def import_graph(directory: Path, root: Path = REPO) -> dict[str, set[str]]:
    """Each module under ``directory`` (named relative to ``root``) -> the modules under ``directory``
    that its import statements and ``import_module`` calls name, anywhere in its code (``TYPE_CHECKING``
    blocks and functions included). ``from p import n`` names ``p.n`` where that is a module
    (``from flair_elmo_modes.bilm.fast import onednn``), else ``p``. A package's ``__init__.py`` runs
    before its modules, but that is no import statement of theirs: no edge (``bilm/__init__.py``
    imports its modules lazily, PEP 562)."""
    files = {module_name(path, root): path for path in sorted(directory.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = package_of(path, root)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                origin = _from_module(node, package)
                targets.update(f"{origin}.{a.name}" if f"{origin}.{a.name}" in files else origin for a in node.names)
            elif (module := _import_module_call(node)) is not None:
                targets.add(module)
        graph[name] = {target for target in targets if target in files}
    return graph


def reachable(graph: dict[str, set[str]], starts: set[str]) -> set[str]:
    """The modules that ``starts`` import, directly or through others, and ``starts`` themselves."""
    seen, todo = set(starts), list(starts)
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports, ``[a, b, ..., a]`` (the first in sorted order), or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        path.append(node)
        for target in sorted(graph[node]):
            if target in path:
                return [*path[path.index(target) :], target]
            if target not in done and (circle := visit(target)) is not None:
                return circle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done and (circle := visit(node)) is not None:
            return circle
    return None


def test_the_circle_check_sees_function_level_and_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from typing import TYPE_CHECKING\n", encoding="utf-8")
    (package / "a.py").write_text("def f():\n    from pkg import b\n", encoding="utf-8")
    type_checking = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\n"
    (package / "b.py").write_text(type_checking, encoding="utf-8")
    (package / "c.py").write_text("import importlib\nimportlib.import_module('pkg.a')\n", encoding="utf-8")
    graph = import_graph(package, tmp_path)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert find_circle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("X = 1\n", encoding="utf-8")
    assert find_circle(import_graph(package, tmp_path)) is None
    (package / "c.py").write_text("from pkg import b as _\n", encoding="utf-8")  # b <-> c
    assert find_circle(import_graph(package, tmp_path)) == ["pkg.b", "pkg.c", "pkg.b"]
    (package / "c.py").write_text("import pkg.c\n", encoding="utf-8")  # itself
    assert find_circle(import_graph(package, tmp_path)) == ["pkg.c", "pkg.c"]


def test_no_import_circle_among_bilm_modules() -> None:
    graph = import_graph(PACKAGE)  # the whole package: a circle may leave bilm and come back
    bilm = {name for name in graph if name.startswith("flair_elmo_modes.bilm")}
    # the edges that once made a circle: the LSTM uses the kernels, which see a layer as a value
    lstm, kernels = graph["flair_elmo_modes.bilm.lstm"], graph["flair_elmo_modes.bilm.fast.kernels"]
    assert {"flair_elmo_modes.bilm.fast.kernel_plan", "flair_elmo_modes.bilm.lstm_cell"} <= lstm
    assert "flair_elmo_modes.bilm.lstm_cell" in kernels and "flair_elmo_modes.bilm.lstm" not in kernels
    within = reachable(graph, bilm)
    assert find_circle({name: graph[name] & within for name in within}) is None


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import flair_elmo_modes.bilm as bilm
names = sorted(info.name for info in pkgutil.walk_packages(bilm.__path__, prefix=f"{bilm.__name__}."))
for name in names:
    importlib.import_module(name)
for name in bilm.__all__:
    getattr(bilm, name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("flair", "transformers"))
print(json.dumps({"imported": names, "heavy": heavy}))
"""


def test_importing_all_of_bilm_leaves_flair_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "flair_elmo_modes.bilm.hdf5" in report["imported"] and "flair_elmo_modes.bilm.model" in report["imported"]
    assert "flair_elmo_modes.bilm.fast.kernels" in report["imported"]
    assert report["heavy"] == []
