"""Test helpers: small models in the official file layout, built from a seed; a full disk."""

from __future__ import annotations

import copy
import dataclasses
import errno
import io
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from flair_elmo_modes import atomic, models
from flair_elmo_modes.bilm import ElmoBiLm, ElmoOptions, save_bilm
from flair_elmo_modes.bilm.fast import kernel_plan

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


#: float32's machine epsilon: one rounding changes a value ``x`` by at most ``FLOAT32_EPS / 2 * |x|``.
FLOAT32_EPS = torch.finfo(torch.float32).eps

#: float64's machine epsilon (2.2e-16), ``FLOAT32_EPS / 2**29``.
FLOAT64_EPS = torch.finfo(torch.float64).eps

#: The project's accuracy rule for float32 paths (the kernel rule of issue 21): a path qualifies
#: when its float32 error against a float64 evaluation of the same inputs is within this factor of
#: the plain float32 path's error, in mean and in max. Two float32 evaluations that sum in another
#: order round differently but alike in size; 3x leaves room for the spread of a maximum over
#: finitely many elements, and an error that is wrong code (a mask, a lost row) is orders larger.
ACCURACY_FACTOR = kernel_plan.ACCURACY_FACTOR

#: Weight scale at which the random test LSTMs contract: their float32 error stays a few ulps of
#: the values (2-3 eps relative for ALIGNED_OPTIONS). At random_bilm's default 0.6 ALIGNED_OPTIONS
#: is chaotic: over 70 steps float32 and float64 diverge completely (error 6 on values of 10), and
#: no float32 tolerance means anything there.
CONTRACTING_SCALE = 0.2

Values = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]

#: For tests that build a bf16 embedder: where the CPU lacks native bf16 (or the AVX2 leg of CI holds
#: oneDNN below it), the library warns once that bf16 will be slower: expected there, not an error.
#: (The warning itself is tested in tests/bilm/test_precision.py.)
BF16_MAY_WARN = pytest.mark.filterwarnings("ignore:precision='bf16' on this CPU will be slower:RuntimeWarning")


def _flat64(values: Values) -> torch.Tensor:
    """Every element of ``values`` (one array, or a sequence of them such as sentences of different
    lengths) as one float64 vector."""
    if isinstance(values, torch.Tensor | np.ndarray):
        values = [values]
    parts = [torch.as_tensor(v).detach().to(torch.float64).reshape(-1) for v in values]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def assert_within(actual: torch.Tensor, expected: torch.Tensor, bound: torch.Tensor) -> None:
    """``|actual - expected| <= bound`` element by element, for a rounding bound derived per element
    (such as a few roundings of the magnitudes summed into each element)."""
    assert actual.shape == expected.shape == bound.shape, (actual.shape, expected.shape, bound.shape)
    excess = (actual.double() - expected.double()).abs() - bound.double()
    beyond = int((excess > 0).sum())
    assert beyond == 0, f"{beyond} elements beyond their bound, by up to {float(excess.max()):.3g}"


def float32_error(values: Values, exact: Values) -> float:
    """Largest absolute difference of float32 ``values`` from a float64 computation ``exact``."""
    return float((_flat64(values) - _flat64(exact)).abs().max())


def assert_as_accurate(candidate: Values, baseline: Values, exact: Values, dtype: torch.dtype = torch.float32) -> None:
    """``candidate`` (a float32 path) is within float32 rounding of ``exact`` (a float64 evaluation of
    the same inputs): its mean and max abs error are at most ``ACCURACY_FACTOR`` times those of
    ``baseline``, the plain float32 path on the same inputs, pooled over all elements. With
    ``dtype=torch.bfloat16`` (or float16): the same for paths whose products round to that type,
    against the plain path of that precision.

    An error never has to be smaller than ``eps * |exact|`` (two half-ulp roundings): where
    the baseline happens to be exact, that is the floor. The baseline itself must keep more than half
    of the type's digits (error <= sqrt(eps) * max |exact|): otherwise the model amplifies rounding
    (a chaotic recurrence) and the comparison says nothing; use ``CONTRACTING_SCALE``.
    """
    got, plain, want = _flat64(candidate), _flat64(baseline), _flat64(exact)
    assert got.shape == plain.shape == want.shape, (got.shape, plain.shape, want.shape)
    if want.numel() == 0:
        return
    eps = torch.finfo(dtype).eps
    floor = eps * want.abs()
    got_error, plain_error = (got - want).abs(), (plain - want).abs()
    assert float(plain_error.max()) <= eps**0.5 * float(want.abs().max()), (
        f"the {dtype} baseline is {float(plain_error.max()):.3g} from float64 on values up to "
        f"{float(want.abs().max()):.3g}: this model amplifies rounding, no {dtype} bound applies"
    )
    for statistic in (torch.max, torch.mean):
        worst, reference = float(statistic(got_error)), max(float(statistic(plain_error)), float(statistic(floor)))
        assert worst <= ACCURACY_FACTOR * reference, (
            f"{statistic.__name__} abs error {worst:.3g} vs the plain {dtype} path's {reference:.3g} "
            f"(allowed {ACCURACY_FACTOR:g}x)"
        )


def rounding_tolerance(float32: Values, exact: Values) -> float:
    """The largest abs difference allowed between two float32 evaluations of a computation that may
    round differently (other batches, kernels, implementations), or between one of them and
    ``exact``: each may be ``ACCURACY_FACTOR`` times as far from ``exact``, a float64 evaluation, as
    ``float32``, the plain float32 evaluation, so ``2 * ACCURACY_FACTOR`` times the plain error (at
    least ``FLOAT32_EPS * max |exact|``, two half-ulp roundings of the largest value). Checks that
    float32 keeps more than half of its digits: otherwise the computation amplifies rounding
    (chaotic) and no rounding bound applies."""
    error = float32_error(float32, exact)
    flat = _flat64(exact)
    largest = float(flat.abs().max()) if flat.numel() else 0.0
    assert error <= FLOAT32_EPS**0.5 * largest, (
        f"float32 error {error:.3g} on values up to {largest:.3g}: this computation amplifies rounding "
        "(chaotic), no rounding bound applies"
    )
    return 2 * ACCURACY_FACTOR * max(error, FLOAT32_EPS * largest)


def float64_tolerance(float32: Values, exact: Values) -> float:
    """The largest abs difference allowed between two float64 evaluations of one computation that may
    round differently (other summation order, batch, algorithm), derived as :func:`float32_tolerance`
    from ``float32``, a float32 evaluation of the same computation on the same inputs, and ``exact``,
    a float64 one: the float32 error measures how much the computation amplifies its roundings, and
    float64 roundings are amplified alike (while float32 keeps more than half of its digits the
    propagation is linear), only ``FLOAT64_EPS / FLOAT32_EPS = 2**-29`` the size. Two float64
    evaluations may then differ by ``2 * ACCURACY_FACTOR`` such errors, at least
    ``2 * ACCURACY_FACTOR * FLOAT64_EPS * max |exact|``. A wrong result (a mask, a gate, a lost row)
    is orders of magnitude larger. Unlike a constant such as 1e-12, the bound follows the values'
    magnitude and the computation's conditioning, on any CPU.
    """
    return rounding_tolerance(float32, exact) * FLOAT64_EPS / FLOAT32_EPS


def float32_tolerance(bilm: ElmoBiLm, sentences: Sequence[Sequence[str]]) -> float:
    """The largest abs difference allowed between two float32 evaluations of ``bilm`` on ``sentences``
    that may round differently (other batches, kernels, thread counts): :func:`rounding_tolerance` of
    the plain float32 path, measured here on the same sentences against a float64 evaluation.
    Sentences are evaluated one at a time, without state.
    """
    from flair_elmo_modes import ElmoEmbedder
    from flair_elmo_modes.bilm.fast.fast_paths import fast_paths

    sentences = [list(s) for s in sentences if len(s)]
    exact = ElmoEmbedder(bilm=copy.deepcopy(bilm).double()).embed_batch(sentences)
    embedder = ElmoEmbedder(bilm=copy.deepcopy(bilm))  # a copy: ElmoEmbedder freezes its biLM
    with fast_paths(enabled=False):
        plain = [embedder.embed_sentence(s) for s in sentences]
    return rounding_tolerance(plain, exact)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """``torch.set_num_threads(count)`` inside the block: MKL's float32 products may round differently
    for another thread count (AMD EPYC), so bitwise comparisons need the same count on both sides."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_as_published(cache_root: Path, name: str, files: tuple[Path, Path]) -> tuple[Path, Path]:
    """Put a model's two files where a download of published model ``name`` would be cached."""
    cached = []
    for url, source in zip(models.PUBLISHED_MODELS[name].urls, files, strict=True):
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
    """Files opened by ``atomic_file`` (those for which ``only`` is true) hold at most ``capacity`` bytes.

    By default every file but the kernel plan's: a full disk there leaves the plan in memory
    (``tests/bilm/fast/test_kernel_plan.py``) and would add its warning to what a test checks.
    """
    real_open = open
    plans = kernel_plan.plan_directory()

    def opening(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        handle = real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]
        chosen = only(Path(str(path))) if only is not None else not Path(str(path)).is_relative_to(plans)
        return FullDisk(handle, capacity) if "b" in mode and "+" in mode and chosen else handle

    monkeypatch.setattr(atomic, "open", opening, raising=False)


def default_signals() -> None:
    """``preexec_fn`` of a child that is sent signals: a child of a non-interactive shell or of nohup
    may inherit ignored signals, and Python keeps them ignored."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
