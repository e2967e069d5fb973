"""The switch for the biLM's exact shortcuts (as ``torch.backends.cudnn.flags`` is for cuDNN).

Every shortcut computes the same values as the plain computation, up to float32 rounding; each
can be turned off for a block of code, e.g. to compare against the plain path in a test or a
benchmark::

    with fast_paths(enabled=False):      # the plain torch computation (bilm/lstm_cell.py's step)
        plain = bilm(char_ids)
    with fast_paths(onednn=False):       # only oneDNN off
        ...
    with fast_paths(kernel="OneDnnKernel"):  # one LSTM kernel throughout (tests, benchmarks)
        ...

The setting is a context variable: it applies to the current thread (and asyncio task) only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class FastPaths:
    """Which shortcuts the biLM may take.

    Attributes:
        enabled: master switch; False runs the plain computation whatever the other fields say:
            the character encoder without its shortcuts, and the LSTM's plain out-of-place step
            (:class:`~flair_elmo_modes.bilm.lstm_cell.TorchKernel`, in the weights' dtype). The
            precision is no shortcut: under bf16 or fp16 the character encoder's products still
            take that type (:mod:`~flair_elmo_modes.bilm.precision`).
        onednn: the LSTM kernels with oneDNN's pre-packed weights, ``OneDnnKernel`` and
            ``OneDnnKernel:bf16`` (x86 CPUs). Off: they are no candidates, and batch-invariant
            mode's LSTM steps fall back to the ordinary, batch-dependent products. The character
            encoder's products do not follow it: they take oneDNN in batch-invariant mode, and its
            packed bf16 weights under bf16 (:mod:`~flair_elmo_modes.bilm.fast.onednn`).
        mkl_packed: ``MklKernel``, for float32 CPU inference of LSTMs with large recurrent weights
            ("original"): steps of many rows multiplied by MKL's pre-packed weights (see
            ``bilm/fast/mkl.py``); a candidate of the plan, and the fixed rule's kernel at
            ``mkl.MIN_ROWS`` rows or more.
        in_place: without autograd, the LSTM's inference kernels, which run in place in
            preallocated buffers (every kernel but the plain one). Off: every LSTM step takes the
            plain out-of-place kernel.
        distinct_tokens: the character encoder encodes each distinct token of a batch once.
        trimmed_windows: the character encoder convolves only the windows that touch a real
            character (the others read the same padding for every token).
        batch_invariant: on x86 CPUs, run every product through oneDNN (under bf16: where it packs
            bf16 weights), whose result for a row does not depend on the other rows, so that a
            sentence's vectors are bitwise the same in any batch. Off by default: the kernels are
            then chosen for speed per workload, and a sentence's vectors in different batches
            differ by float32 rounding only (each kernel as close to a float64 evaluation as the
            plain path, within ``kernel_plan.ACCURACY_FACTOR``).
        planned: choose each LSTM layer's inference kernel by measuring the candidates on this
            machine (:mod:`~flair_elmo_modes.bilm.fast.kernel_plan`); off: a fixed rule
            (:func:`~flair_elmo_modes.bilm.fast.kernels.kernel_name`).
        kernel: run every LSTM inference step with this kernel (a name of
            :func:`~flair_elmo_modes.bilm.fast.kernels.candidates`, e.g. ``"OneDnnKernel"``): for tests
            and benchmarks. None: planned or by rule.
    """

    enabled: bool = True
    onednn: bool = True
    mkl_packed: bool = True
    in_place: bool = True
    distinct_tokens: bool = True
    trimmed_windows: bool = True
    batch_invariant: bool = False
    planned: bool = True
    kernel: str | None = None

    def allows(self, name: str) -> bool:
        """Whether shortcut ``name`` (a field other than ``enabled``) is on."""
        return self.enabled and bool(getattr(self, name))


_DEFAULT = FastPaths()
_CURRENT: ContextVar[FastPaths] = ContextVar("flair_elmo_modes_fast_paths", default=_DEFAULT)  # frozen: safe to share


def current() -> FastPaths:
    """The setting in force here."""
    return _CURRENT.get()


@contextmanager
def fast_paths(**changes: bool | str | None) -> Iterator[FastPaths]:
    """Change some fields of :class:`FastPaths` inside a ``with`` block (nested blocks compose).

    Raises:
        TypeError: an unknown field.
    """
    fields = {field.name for field in dataclasses.fields(FastPaths)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise TypeError(f"unknown fast path(s) {', '.join(unknown)}; expected some of {', '.join(sorted(fields))}")
    token = _CURRENT.set(dataclasses.replace(_CURRENT.get(), **changes))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)
