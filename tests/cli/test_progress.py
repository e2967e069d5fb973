"""Progress on stderr (cli/progress.py), through ``flair-elmo embed``: the bar, file-friendly lines, --quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.helpers import LINES, run, write_input


def test_embed_progress_on_stderr_and_quiet(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    code, out, err = run(capsys, "embed", source, tmp_path / "a.hdf5", "--model", model_dir)
    assert code == 0 and out == ""
    assert "sentences/s" in err and f"wrote {len(LINES)} sentences" in err
    assert run(capsys, "embed", source, tmp_path / "b.hdf5", "--model", model_dir, "--quiet")[1:] == ("", "")


def test_embed_file_friendly_logging_prints_lines_without_carriage_returns(
    tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_input(tmp_path / "in.txt", LINES)
    code, out, err = run(capsys, "embed", source, tmp_path / "a.hdf5", "--model", model_dir, "--file-friendly-logging")
    assert code == 0 and out == "" and "\r" not in err
    lines = err.splitlines()
    assert lines[-2] == f"embedding: {len(LINES)}/{len(LINES)} sentences (100%)" + lines[-2].split("(100%)")[1]
    assert lines[-1].startswith(f"wrote {len(LINES)} sentences")
    _, _, bar = run(capsys, "embed", source, tmp_path / "b.hdf5", "--model", model_dir)
    assert "\r" in bar  # the default progress bar redraws itself
