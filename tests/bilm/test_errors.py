"""The file checks and message helpers of ``flair_elmo_modes.bilm.errors``."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.bilm.errors import (
    ElmoFileError,
    not_a_file,
    require_directory,
    require_file,
    weights_only_refusal,
)


class RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


def test_the_refused_class_is_named_from_this_torchs_message() -> None:
    buffer = io.BytesIO()
    torch.save({"x": RunsCode()}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError) as raised:
        torch.load(buffer, weights_only=True)
    reason = weights_only_refusal(raised.value)
    assert "posix.system" in reason and "weights_only" not in reason


def test_the_refused_class_is_named_from_torch_2_3s_one_line_message() -> None:
    # torch 2.3 puts the refusal on the line that mentions weights_only (measured with torch 2.3.0)
    error = pickle.UnpicklingError(
        "Weights only load failed. Re-running `torch.load` with `weights_only` set to `False` will likely "
        "succeed, but it can result in arbitrary code execution. WeightsUnpickler error: Unsupported class "
        "posix.system"
    )
    assert weights_only_refusal(error) == "Unsupported class posix.system"


def test_what_is_not_a_file_says_what_it_is(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x", encoding="utf-8")
    assert require_file(str(tmp_path / "f"), "thing") == tmp_path / "f"
    assert isinstance(not_a_file(tmp_path / "missing", "thing"), FileNotFoundError)
    assert str(not_a_file(tmp_path / "missing", "thing")) == f"thing not found: {tmp_path / 'missing'}"
    assert isinstance(not_a_file(tmp_path, "thing"), IsADirectoryError)
    dangling = tmp_path / "dangling"
    os.symlink(tmp_path / "nowhere", dangling)
    assert isinstance(not_a_file(dangling, "thing"), FileNotFoundError)
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert isinstance(not_a_file(loop, "thing"), ElmoFileError) and "symlink loop" in str(not_a_file(loop, "thing"))
    assert require_directory(tmp_path, "dir") == tmp_path and require_directory(tmp_path / "missing", "dir") is None
    with pytest.raises(ElmoFileError, match="symlink loop"):
        require_directory(loop, "dir")
