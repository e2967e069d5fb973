"""oneDNN pre-packed linear maps for CPU inference.

A matrix multiply against a fixed weight can be faster on x86 CPUs when oneDNN lays the weight out
once for its kernels ("pre-packing"): measured about 2x for the few-row products of an LSTM time
step, and as fast as MKL's ``addmm`` for large ones; whether it beats MKL's own pre-packed products
(:mod:`~flair_elmo_modes.bilm.fast.mkl`) depends on the CPU, which is why the LSTM's kernel plan
measures it. A row's result does not depend on the other rows of the product (one row alone
excepted, see :func:`linear`).

Rounding: oneDNN adds the terms of a dot product in one chain, in order. Up to about 200 terms
that is bitwise what MKL's ``addmm`` gives; for longer products MKL sums blocks of terms separately
and is more accurate (measured at 2048 terms: 1.5x on average on an Intel Xeon, 2x on average and
2.75x at the maximum on an AMD EPYC), a difference of float32 rounding only. In exchange every
row's result is independent of the other rows and of how many there are: where every product of a
forward runs here (batch-invariant mode), a sentence's float32 vectors are bitwise the same in any
batch.

Used for CPU tensors without autograd, and only when this torch build has oneDNN's linear ops
(x86 builds), for:

- the LSTM steps of ``OneDnnKernel`` and ``OneDnnKernel:bf16``
  (:mod:`flair_elmo_modes.bilm.fast.kernels`): where the kernel plan measured one of them fastest
  (:mod:`flair_elmo_modes.bilm.fast.kernel_plan`), where the fixed rule names one (under bf16,
  or in batch-invariant mode), or where ``fast_paths(kernel=...)`` forces one;
- the character encoder's float32 products in batch-invariant mode (:func:`packed_linear`, see
  :mod:`flair_elmo_modes.bilm.fast.fast_paths`);
- the character encoder's bf16 products where oneDNN packs bf16 weights (:func:`reduced_linear`).

Everything else takes the ordinary ``torch`` ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from flair_elmo_modes.bilm.fast import fast_paths
from flair_elmo_modes.bilm.precision import product_dtype

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.fast.derived import DerivedTensors

# Rows the packed layout is tuned for; products with any number of rows are correct.
BATCH_HINT = 32

# Row counts of the products oneDNN runs (see :func:`linear`): multiples of ROW_STEP, at most
# CHUNK_ROWS at a time (per-step products of a recurrence: their exact count).
ROW_STEP = 16
CHUNK_ROWS = 512  # an LSTM input-projection block (lstm.INPUT_PROJECTION_ROWS) is one chunk: no copy to join chunks


def usable(like: torch.Tensor) -> bool:
    """Whether pre-packed oneDNN linear maps can serve tensors like ``like`` (float32, CPU)."""
    return (
        like.device.type == "cpu"
        and like.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def bf16_usable(like: torch.Tensor) -> bool:
    """Whether oneDNN can pack bf16 weights for tensors like ``like`` (float32, CPU): it needs AVX-512
    (BW, VL, DQ) or AVX-NE-CONVERT, and no ``ONEDNN_MAX_CPU_ISA`` below them; elsewhere bf16
    products take ``torch`` ops."""
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return usable(like) and supported is not None and bool(supported())


def applies(inputs: torch.Tensor, *parameters: torch.Tensor) -> bool:
    """Whether a product of ``(..., in)`` ``inputs`` with ``parameters`` takes the packed path: for
    float32 on a CPU with oneDNN when no gradient is needed (the packed ops have no backward)."""
    return usable(inputs) and not needs_grad(inputs, *parameters)


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd must see a product of ``tensors`` (then it takes the weights' dtype and torch's ops)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def linear(
    inputs: torch.Tensor,
    packed: torch.Tensor,
    bias: torch.Tensor | None = None,
    add: torch.Tensor | None = None,
    step: bool = False,
) -> torch.Tensor:
    """``inputs @ weight.T (+ bias) (+ add)`` for ``(n, in)`` inputs and a packed ``(out, in)`` weight.

    oneDNN (and PyTorch's wrapper around it) compiles and caches a kernel for every number of rows
    it sees, about half a MiB each and up to 1,024 of them per cache, so a stream of batches with
    ever new row counts would grow the process by hundreds of MiB. Products therefore run on few
    row counts: at most ``CHUNK_ROWS`` rows at a time, each chunk padded with zero rows to a
    multiple of ``ROW_STEP``; only the per-step products of a recurrence (``step=True``, at most
    one row count per batch row) keep their exact count. Row results do not depend on the other
    rows, so none of this changes a value.

    Args:
        inputs: ``(n, in)``.
        packed: from :func:`pack`.
        bias: ``(out,)`` or None.
        add: ``(n, out)`` added to the product, or None.
        step: a per-step product of a recurrence: few rows, not padded.

    Returns:
        A new ``(n, out)`` tensor.
    """
    n = len(inputs)
    if n > CHUNK_ROWS:
        chunks = [
            linear(inputs[i : i + CHUNK_ROWS], packed, bias, None if add is None else add[i : i + CHUNK_ROWS], step)
            for i in range(0, n, CHUNK_ROWS)
        ]
        return torch.cat(chunks)
    # One row takes another kernel, which rounds long dot products differently: it goes in as two.
    rows = max(n, 2) if step else max(-(-n // ROW_STEP) * ROW_STEP, ROW_STEP)
    if rows != n:
        inputs = torch.cat([inputs, inputs.new_zeros(rows - n, inputs.shape[1])])
        add = None if add is None else torch.cat([add, add.new_zeros(rows - n, add.shape[1])])
    if add is None:
        out = torch.ops.mkldnn._linear_pointwise(inputs, packed, bias, "none", [], "")
    else:
        out = torch.ops.mkldnn._linear_pointwise.binary(inputs, add, packed, bias, "add")
    return out if rows == n else out[:n]


def pack(weight: torch.Tensor) -> torch.Tensor:
    """An ``(out, in)`` weight laid out for oneDNN's kernels (a copy, as much memory as ``weight``).

    Keep it in a :class:`~flair_elmo_modes.bilm.fast.derived.DerivedTensors`, which rebuilds it when
    ``weight`` changes.
    """
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach(), BATCH_HINT)


def packed_linear(
    derived: DerivedTensors,
    name: str,
    inputs: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sources: Sequence[torch.Tensor],
) -> torch.Tensor:
    """``inputs @ weight.T + bias`` for ``(n, in)`` inputs, the character encoder's products.

    Under a reduced precision (bf16, fp16) without autograd: the product in that type (see
    :func:`reduced_linear`). In float32: through oneDNN with a packed copy of ``weight`` (kept in
    ``derived`` under ``name``, rebuilt when ``sources`` change) in batch-invariant mode where
    :func:`applies`, else ``torch.nn.functional.linear`` (MKL on CPUs, which sums long dot products
    more accurately).
    """
    dtype = product_dtype(inputs)
    if dtype is not None and not needs_grad(inputs, *sources):
        return reduced_linear(derived, name, inputs, weight, bias, sources, dtype)
    if fast_paths.current().allows("batch_invariant") and applies(inputs, *sources):
        return linear(inputs, derived.get(name, sources, lambda: pack(weight)), bias)
    return torch.nn.functional.linear(inputs, weight, bias)


def reduced_linear(
    derived: DerivedTensors,
    name: str,
    inputs: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    sources: Sequence[torch.Tensor],
    dtype: torch.dtype,
) -> torch.Tensor:
    """``inputs @ weight.T + bias`` with the product in ``dtype`` (bf16 or fp16): float32 ``(n, in)``
    inputs and ``weight`` rounded to ``dtype``, float32 accumulation inside the GEMM, the bias
    added in float32; a float32 ``(n, out)`` result. The copy of ``weight`` in ``dtype`` (packed
    for oneDNN on CPUs, whose rows are then independent of each other) is kept in ``derived``.
    """
    tag = str(dtype).removeprefix("torch.")
    if dtype == torch.bfloat16 and bf16_usable(inputs):  # float32 on a CPU whose oneDNN packs bf16
        packed = derived.get(f"{name}.{tag}", sources, lambda: pack(weight.to(dtype)))
        product = linear(inputs.to(dtype), packed)
    else:
        low = derived.get(f"{name}.{tag}", sources, lambda: weight.detach().to(dtype))
        product = torch.nn.functional.linear(inputs.to(dtype), low)
    return product.float() if bias is None else torch.add(product, bias)
