"""A Flair-free core: the package, the biLM, ``ElmoEmbedder`` and the CLI import neither Flair nor
transformers, and ``flair-elmo --help`` not even torch. Each case runs in a fresh interpreter and
reports the heavy modules left in ``sys.modules`` at exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import flair_elmo_modes

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("flair", "transformers", "torch", "h5py")

# Runs Python code (argv[1]) or the CLI (argv[1] == "-m", like ``python -m flair_elmo_modes``), then
# prints the heavy top-level modules imported, as the last line of stdout.
WRAPPER = f"""
import atexit, json, runpy, sys
atexit.register(lambda: print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))))
if sys.argv[1] == "-m":
    sys.argv = ["flair-elmo", *sys.argv[2:]]
    runpy.run_module("flair_elmo_modes", run_name="__main__", alter_sys=True)
else:
    exec(sys.argv[1])
"""


def heavy_modules(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_import_package_imports_nothing_heavy() -> None:
    assert heavy_modules("import flair_elmo_modes") == set()


def test_the_application_layers_values_import_nothing_heavy() -> None:
    # their docstrings say so: naming a model, an embedding job, an error or a text costs no torch
    code = (
        "import flair_elmo_modes.catalogue, flair_elmo_modes.models, flair_elmo_modes.embedding_spec, "
        "flair_elmo_modes.errors, flair_elmo_modes.text, flair_elmo_modes.model_info"
    )
    assert heavy_modules(code) == set()


@pytest.mark.parametrize(
    "code",
    [
        "import flair_elmo_modes.bilm",
        "from flair_elmo_modes.bilm import ElmoBiLm, ElmoOptions, load_bilm",
        "from flair_elmo_modes import ElmoEmbedder",
        "import flair_elmo_modes.embedder, flair_elmo_modes.layers, flair_elmo_modes.models",
        "import flair_elmo_modes.hdf5_output, flair_elmo_modes.runner",
        "import flair_elmo_modes; assert flair_elmo_modes.cli.main(['--help']) == 0",
    ],
)
def test_core_imports_leave_flair_out(code: str) -> None:
    assert not heavy_modules(code) & {"flair", "transformers"}


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["embed", "--help"], ["info", "--help"], ["demo", "--help"]],
    ids=" ".join,
)
def test_help_imports_no_torch(argv: list[str]) -> None:
    assert heavy_modules("-m", *argv) == set()


@pytest.mark.parametrize("model", [flair_elmo_modes.SHIPPED_MODEL, "--system"])
def test_info_leaves_flair_out(model: str) -> None:
    assert not heavy_modules("-m", "info", model) & {"flair", "transformers"}


def test_embed_with_the_shipped_model_leaves_flair_out(tmp_path: Path) -> None:
    source, target = tmp_path / "in.txt", tmp_path / "out.hdf5"
    source.write_text("I ate an apple\nfor breakfast\n", encoding="utf-8")
    modules = heavy_modules(
        "-m", "embed", str(source), str(target), "--model", flair_elmo_modes.SHIPPED_MODEL, "--quiet"
    )
    assert target.is_file()
    assert not modules & {"flair", "transformers"}


def test_train_help_leaves_flair_out() -> None:
    assert not heavy_modules("-m", "train", "--help") & {"flair", "transformers"}


def test_names_resolve_on_first_use() -> None:
    assert flair_elmo_modes.ElmoOptions.__name__ == "ElmoOptions"
    assert "ElmoOptions" in vars(flair_elmo_modes)  # cached: __getattr__ runs once per name
    assert flair_elmo_modes.models.SHIPPED_MODEL == flair_elmo_modes.SHIPPED_MODEL
    assert set(flair_elmo_modes.__all__) | {"bilm", "cli", "models"} <= set(dir(flair_elmo_modes))
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        flair_elmo_modes.nope  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        flair_elmo_modes.bilm.nope  # noqa: B018
