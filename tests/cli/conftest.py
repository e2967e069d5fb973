"""Fixtures of the ``flair-elmo`` tests: the small random model and an output file to keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from flair_elmo_modes import ElmoEmbedder
from tests.training.conftest import corpus_files  # noqa: F401  # the training text, for train_command's tests


@pytest.fixture
def model_dir(tiny_model_files: tuple[Path, Path]) -> Path:
    return tiny_model_files[0].parent


@pytest.fixture
def embedder(tiny_model_files: tuple[Path, Path]) -> ElmoEmbedder:
    return ElmoEmbedder(*tiny_model_files)


@pytest.fixture
def existing_output(tmp_path: Path) -> Path:
    output = tmp_path / "out.hdf5"
    output.write_bytes(b"precious")
    return output
