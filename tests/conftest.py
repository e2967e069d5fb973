from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_random_model


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Options and weights of a small random model in the official layout."""
    return write_random_model(tmp_path_factory.mktemp("tiny_model"))
