"""The ``flair-elmo`` entry point (cli/main.py): help, a missing command, ``python -m flair_elmo_modes``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.helpers import REPO, run

# --------------------------------------------------------------------------------------------
# help


@pytest.mark.parametrize("command", [[], ["embed"], ["info"], ["demo"]])
def test_help(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    code, out, err = run(capsys, *command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: flair-elmo {' '.join(command)}".rstrip())
    assert "examples:\n  flair-elmo " in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out == "" and "usage: flair-elmo" in err


def test_python_m_help_subprocess() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flair_elmo_modes", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: flair-elmo")
    for command in ("embed", "info", "demo", "train"):
        assert f"    {command} " in result.stdout
