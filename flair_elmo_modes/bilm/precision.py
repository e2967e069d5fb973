"""The precision of the biLM's matrix products at inference: ``"fp32"`` (default), ``"bf16"``, ``"fp16"``.

In ``"bf16"`` and ``"fp16"`` the products of the character encoder (convolutions, highway,
projection) and of the LSTM (input, recurrent and projection products) take their inputs and
weights rounded to that type and accumulate in float32 inside the GEMM; everything else stays in
float32: biases, the LSTM's gates and memory cells, the highway's gating, residual connections,
and the layers returned. So a long recurrence does not accumulate bf16 rounding in its state.

``fp16`` serves CUDA GPUs: CPUs have no fast float16 products (they are emulated, several times
slower than float32), so on a CPU it is refused. ``bf16`` runs anywhere, natively on CPUs with
AVX-512 BF16 or AMX-BF16 (and GPUs since Ampere); elsewhere it is slower than float32, and says so
once.

The precision in force is a context variable (as ``torch.autocast``'s state): the runner of an
embedder sets it around each forward (:func:`computing_in`); products read it with
:func:`product_dtype`. Autograd (training, fine-tuning) always computes in the weights' dtype.

Importing this module does not import torch (the command line names :data:`PRECISIONS`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Literal, cast

from flair_elmo_modes.bilm.cpu import BF16_FLAGS, bf16_held_back, cpu_flags, native_bf16

if TYPE_CHECKING:
    import torch

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16")

_CURRENT: ContextVar[Precision] = ContextVar("flair_elmo_modes_precision", default="fp32")
_warned: set[str] = set()


def dtype_of(precision: Precision) -> torch.dtype:
    """The torch dtype of ``precision``'s products."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_precision(precision: str, device: torch.device | str = "cpu") -> Precision:
    """``precision`` as a :data:`Precision` for a biLM on ``device``.

    Warns (once per process) when ``"bf16"`` will run on a CPU without native bf16 products.

    Raises:
        ValueError: an unknown precision, ``"fp16"`` on a CPU, or bf16 on a GPU without it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    import torch

    device = torch.device(device)
    if precision == "fp16" and device.type == "cpu":
        raise ValueError(
            "precision='fp16' serves CUDA GPUs: CPUs have no fast float16 products (torch emulates them, "
            "slower than float32); use precision='bf16' (native on CPUs with avx512_bf16 or amx_bf16) or 'fp32'"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision='bf16': {torch.cuda.get_device_name(device)} has no bf16; use 'fp16' or 'fp32'")
    if precision == "bf16" and device.type == "cpu":
        missing = bf16_missing()
        if missing is not None and missing not in _warned:
            _warned.add(missing)
            warnings.warn(
                f"precision='bf16' on this CPU will be slower than 'fp32': {missing}", RuntimeWarning, stacklevel=3
            )
    return cast(Precision, precision)


def bf16_missing(flags: frozenset[str] | None = None) -> str | None:
    """Why this CPU cannot compute bf16 products natively (None: it can, or its flags are unknown)."""
    flags = cpu_flags() if flags is None else flags
    if native_bf16(flags) is False:
        return f"it has none of the CPU features {', '.join(BF16_FLAGS)}"
    held_back = bf16_held_back()
    if held_back is not None:
        return f"{held_back} keeps oneDNN from its bf16 instructions"
    return None


def current() -> Precision:
    """The precision in force here."""
    return _CURRENT.get()


@contextmanager
def computing_in(precision: Precision) -> Iterator[None]:
    """Compute the biLM's products in ``precision`` inside the block (see the module doc)."""
    token = _CURRENT.set(precision)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def product_dtype(inputs: torch.Tensor) -> torch.dtype | None:
    """The reduced dtype in which inference products of ``inputs`` take place here: bf16 or fp16
    for float32 inputs under that precision; None for the inputs' own dtype. (Callers take their
    autograd path, in the weights' dtype, whenever autograd must see a product.)"""
    precision = _CURRENT.get()
    if precision == "fp32" or not inputs.is_floating_point() or inputs.element_size() != 4:
        return None  # float32 only: a float64 biLM (tests, references) computes in float64
    return dtype_of(precision)
