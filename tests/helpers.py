"""Test helpers: small models in the official file layout, built from a seed; a full disk."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from flair_elmo_modes import atomic, models
from flair_elmo_modes.bilm import ElmoBiLm, ElmoOptions, save_bilm

TINY_OPTIONS = ElmoOptions(
    char_embedding_dim=4,
    filters=((1, 4), (2, 8), (3, 8), (5, 4)),
    n_highway=2,
    activation="tanh",
    n_characters=262,
    max_characters_per_token=50,
    cell_dim=24,
    projection_dim=8,
    n_layers=2,
    cell_clip=3.0,
    proj_clip=3.0,
    use_skip_connections=True,
)

# TINY_OPTIONS with every width a multiple of 32, as in the published models: float32 CPU kernels
# then treat every row alike, so a sentence's vectors are bitwise the same in any batch.
ALIGNED_OPTIONS = dataclasses.replace(
    TINY_OPTIONS, filters=((1, 16), (2, 16)), cell_dim=64, projection_dim=32, n_highway=1
)


def tiny_options(**changes: object) -> ElmoOptions:
    return dataclasses.replace(TINY_OPTIONS, **changes)


def random_bilm(options: ElmoOptions = TINY_OPTIONS, seed: int = 0, scale: float = 0.6) -> ElmoBiLm:
    """A biLM with random weights large enough to reach the clip values."""
    torch.manual_seed(seed)
    bilm = ElmoBiLm(options)
    with torch.no_grad():
        for parameter in bilm.parameters():
            parameter.normal_(0.0, scale)
        bilm.char_encoder.char_embedding.weight[0] = 0.0
    return bilm.eval()


def write_random_model(directory: Path, options: ElmoOptions = TINY_OPTIONS, seed: int = 0) -> tuple[Path, Path]:
    """``options.json`` and ``weights.hdf5`` of :func:`random_bilm` in ``directory``."""
    return save_bilm(directory, random_bilm(options, seed))


def float32_error(values: torch.Tensor, exact: torch.Tensor) -> float:
    """Largest absolute difference of float32 ``values`` from a float64 computation ``exact``."""
    return float((values.detach().double() - exact).abs().max())


def assert_as_accurate(candidate: torch.Tensor, baseline: torch.Tensor, exact: torch.Tensor) -> None:
    """``candidate`` (a fast float32 path) is within float32 rounding of ``exact`` (float64): at most
    twice as far from it as ``baseline``, the straightforward float32 path, plus 1e-6."""
    worst, reference = float32_error(candidate, exact), float32_error(baseline, exact)
    assert worst <= 2 * reference + 1e-6, f"fast path error {worst:.3g} vs straightforward {reference:.3g}"


def cache_as_published(cache_root: Path, name: str, files: tuple[Path, Path]) -> tuple[Path, Path]:
    """Put a model's two files where a download of published model ``name`` would be cached."""
    cached = []
    for url, source in zip(models.PUBLISHED_MODELS[name], files, strict=True):
        location = cache_root / "embeddings" / f"elmo-{name}" / url.rsplit("/", 1)[1]
        location.parent.mkdir(parents=True, exist_ok=True)
        location.write_bytes(source.read_bytes())
        cached.append(location)
    return cached[0], cached[1]


class FullDisk:
    """A raw file whose writes fail with ENOSPC once ``capacity`` bytes are written, as on a full disk."""

    def __init__(self, raw: io.FileIO, capacity: int) -> None:
        self._raw, self.capacity = raw, capacity

    def write(self, data: object) -> int:
        view = memoryview(data).cast("B")  # type: ignore[arg-type]
        if self._raw.tell() + len(view) > self.capacity:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._raw.write(view)

    def __getattr__(self, name: str) -> object:
        return getattr(self._raw, name)

    def __enter__(self) -> FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.close()


def full_disk(monkeypatch: pytest.MonkeyPatch, capacity: int, only: Callable[[Path], bool] | None = None) -> None:
    """Files opened by ``atomic_file`` (those for which ``only`` is true) hold at most ``capacity`` bytes."""
    real_open = open

    def opening(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]
        chosen = only is None or only(Path(str(path)))
        return FullDisk(handle, capacity) if "b" in mode and "+" in mode and chosen else handle

    monkeypatch.setattr(atomic, "open", opening, raising=False)


def default_signals() -> None:
    """``preexec_fn`` of a child that is sent signals: a child of a non-interactive shell or of nohup
    may inherit ignored signals, and Python keeps them ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
