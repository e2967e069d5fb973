"""Ray is an optional extra: the package, the corpus module and ``embed-corpus --help`` do not import it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import contextlib, io, sys
import flair_elmo_modes.corpus
from flair_elmo_modes.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["embed-corpus", "--help"]) == 0
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


def test_the_corpus_module_and_the_command_help_do_not_import_ray() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
