"""oneDNN pre-packed linear maps for CPU inference.

A matrix multiply against a fixed weight is faster on x86 CPUs when oneDNN lays the weight out
once for its kernels ("pre-packing"): about 2x for the few-row products of an LSTM time step,
and as fast as MKL's ``addmm`` for large ones. A row's result does not depend on the other rows
of the product, so small models give the same vectors whatever the batch.

Rounding: oneDNN adds the terms of a dot product in one chain, in order. Up to about 200 terms
that is bitwise what MKL's ``addmm`` gives; for longer products MKL sums blocks of terms separately
and is about 1.5x more accurate on average, a difference far below what the ELMo tolerances
(1e-5 and 1e-4) notice. In exchange every row's result is independent of the other rows and of
how many there are, so a sentence's float32 vectors are bitwise the same in any batch.

Used only for float32 CPU tensors without autograd, and only when this torch build has oneDNN's
linear ops (x86 builds); everything else takes the ordinary ``torch`` ops.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch

# Rows the packed layout is tuned for; products with any number of rows are correct.
BATCH_HINT = 32


def usable(like: torch.Tensor) -> bool:
    """Whether pre-packed oneDNN linear maps can serve tensors like ``like`` (float32, CPU)."""
    return (
        like.device.type == "cpu"
        and like.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def applies(inputs: torch.Tensor, *parameters: torch.Tensor) -> bool:
    """Whether a product of ``(..., in)`` ``inputs`` with ``parameters`` takes the packed path: for
    float32 on a CPU with oneDNN when no gradient is needed (the packed ops have no backward)."""
    if not usable(inputs):
        return False
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in (inputs, *parameters)))


def linear(
    inputs: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None = None, add: torch.Tensor | None = None
) -> torch.Tensor:
    """``inputs @ weight.T (+ bias) (+ add)`` for ``(n, in)`` inputs and a packed ``(out, in)`` weight.

    Args:
        inputs: ``(n, in)``.
        packed: from :meth:`PackedWeights.get`.
        bias: ``(out,)`` or None.
        add: ``(n, out)`` added to the product, or None.

    Returns:
        A new ``(n, out)`` tensor.
    """
    if len(inputs) == 1:
        # A single row takes another kernel, which rounds long dot products differently: send
        # it as two rows, so that its result is the one it gets among other rows.
        doubled = linear(inputs.expand(2, -1), packed, bias, None if add is None else add.expand(2, -1))
        return doubled[:1]
    if add is None:
        return torch.ops.mkldnn._linear_pointwise(inputs, packed, bias, "none", [], "")
    return torch.ops.mkldnn._linear_pointwise.binary(inputs, add, packed, bias, "add")


class PackedWeights:
    """Pre-packed copies of a module's weights, each rebuilt when its source tensors change.

    A copy stays valid while every source is the same tensor (same object, storage and in-place
    version count: an optimiser step or ``load_state_dict`` bumps the count). The copies are not
    pickled or deep-copied; a copy of the module packs again on first use. They take as much
    memory as the weights they copy.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[tuple[object, ...], torch.Tensor]] = {}

    def get(self, name: str, sources: Sequence[torch.Tensor], weight: Callable[[], torch.Tensor]) -> torch.Tensor:
        """The packed ``weight()`` (an ``(out, in)`` matrix computed from ``sources``), packed once."""
        key = tuple((weakref.ref(s), s.data_ptr(), s._version, s.dtype, tuple(s.shape)) for s in sources)
        entry = self._entries.get(name)
        if entry is None or not _same(entry[0], key):
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(weight().detach(), BATCH_HINT)
            entry = self._entries[name] = (key, packed)
        return entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __getstate__(self) -> dict[str, object]:
        return {"_entries": {}}

    def __deepcopy__(self, memo: dict[int, object]) -> PackedWeights:
        return PackedWeights()


def _same(stored: tuple[object, ...], current: tuple[object, ...]) -> bool:
    """Equal keys, comparing the weak references by the tensor they point to."""
    return len(stored) == len(current) and all(
        old[0]() is new[0]() and old[1:] == new[1:]  # type: ignore[index,operator]
        for old, new in zip(stored, current, strict=True)
    )
