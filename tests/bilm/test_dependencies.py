"""The layering of ``flair_elmo_modes.bilm``: no module of it imports Flair; only ``hdf5.py`` imports h5py.

Checked twice: statically (every import statement and ``import_module`` call of every file, also
those under ``TYPE_CHECKING`` or inside functions) and by importing every module in a fresh
interpreter and looking at ``sys.modules`` (which also sees imports made through other modules).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BILM = REPO / "flair_elmo_modes" / "bilm"
BILM_FILES = sorted(BILM.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules that ``path`` imports anywhere in its code."""
    package = "flair_elmo_modes.bilm"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.add(node.module or "")
            else:  # relative: resolve against the package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
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


@pytest.mark.parametrize("path", BILM_FILES, ids=lambda path: path.name)
def test_no_bilm_module_imports_flair(path: Path) -> None:
    assert not top_level(imported_modules(path)) & {"flair", "transformers"}


@pytest.mark.parametrize("path", BILM_FILES, ids=lambda path: path.name)
def test_only_hdf5_imports_h5py_within_bilm(path: Path) -> None:
    if path.name != "hdf5.py":
        assert "h5py" not in top_level(imported_modules(path))


def test_hdf5_is_the_h5py_module() -> None:
    assert "h5py" in top_level(imported_modules(BILM / "hdf5.py"))


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import flair_elmo_modes.bilm as bilm
names = sorted(f"{bilm.__name__}.{info.name}" for info in pkgutil.iter_modules(bilm.__path__))
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
    assert report["heavy"] == []
