"""Known failures as one ``error:`` line and an exit code (cli/errors.py); --debug; unknown exceptions propagate."""

from __future__ import annotations

import argparse
import errno
import signal
from pathlib import Path

import pytest

from flair_elmo_modes.bilm import ElmoFileError
from flair_elmo_modes.cli import errors, info, main
from flair_elmo_modes.errors import ElmoError, ModelDownloadError, UsageError
from tests.cli.helpers import run


def test_embed_debug_shows_traceback(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "embed", tmp_path / "nope.txt", tmp_path / "out.hdf5", "--debug")
    assert code == 2
    assert "Traceback" in err and err.rstrip().endswith("error: input file not found: " + str(tmp_path / "nope.txt"))
    code, _, err = run(capsys, "--debug", "embed", tmp_path / "nope.txt", tmp_path / "out.hdf5")
    assert code == 2 and "Traceback" in err


# --------------------------------------------------------------------------------------------
# error table


def test_describe_error_table() -> None:
    assert errors.describe_error(UsageError("bad")) == (2, "bad")
    assert errors.describe_error(ElmoError("failed")) == (1, "failed")
    bad_input = ElmoError("shards failed")
    bad_input.bad_input = True  # a failure the library knows to be the input's (a corpus job's shards)
    assert errors.describe_error(bad_input) == (2, "shards failed")
    assert errors.describe_error(ElmoFileError("f: x\ny")) == (2, "f: x y")
    assert errors.describe_error(ModelDownloadError("could not download")) == (1, "could not download")
    assert errors.describe_error(FileNotFoundError(2, "No such file or directory", "a.txt")) == (
        2,
        "a.txt: No such file or directory",
    )
    assert errors.describe_error(PermissionError(13, "Permission denied", "b")) == (1, "b: Permission denied")
    assert errors.describe_error(KeyboardInterrupt()) == (130, "interrupted")
    assert errors.describe_error(errors.Interrupted(signal.SIGTERM)) == (143, "terminated (SIGTERM)")
    assert errors.describe_error(RuntimeError("a bug")) is None


def test_unknown_exceptions_propagate(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setattr(info, "run", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["info", "whatever"])


def test_describe_error_knows_allocation_failures_and_write_errors() -> None:
    from flair_elmo_modes.atomic import WriteError

    assert errors.describe_error(MemoryError()) == (1, "out of memory; try a smaller --batch-size")
    assert errors.describe_error(WriteError("out.hdf5", "No space left on device", errno.ENOSPC)) == (
        1,
        "cannot write out.hdf5: No space left on device",
    )
    assert errors.describe_error(RuntimeError("std::bad_alloc"))[0] == 1  # type: ignore[index]
    assert errors.describe_error(RuntimeError("shapes do not match")) is None  # still a bug
