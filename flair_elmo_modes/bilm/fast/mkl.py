"""MKL's pre-packed matrix products for the LSTM steps of large models (CPU float32 inference).

An ordinary ``torch.mm`` against an LSTM weight lets MKL copy the weight into its kernels' layout
on every call. For the 8-64 rows of a time step against "original"'s 32 MB recurrent weight that
copy is most of the work: with the weight packed once (``cblas_sgemm_pack``, through PyTorch's
``mkl::_mkl_reorder_linear_weight``) a 32-row product takes 0.4x the time of ``mm``
(``benchmarks/bench_shapes.py`` measures the end-to-end effect). The packed product is MKL's own
GEMM, so it rounds as ``mm`` does (unlike oneDNN's, see :mod:`flair_elmo_modes.bilm.fast.onednn`).

A packed weight serves products of exactly ``PACK_ROWS`` rows; :func:`linear` runs other row counts
as chunks of ``PACK_ROWS`` rows, the last one padded. A row's result does not depend on the
padding rows. The LSTM steps use it for ``MIN_ROWS`` to ``PACK_ROWS`` rows only: fewer rows are
cheaper through ``mm`` than padded to ``PACK_ROWS``, and each chunk reads the whole packed weight
(at 128 rows four chunks were slower than one ``mm``).

The packed layout takes more memory than the weight (47 MB for a 32 MB weight, at least 8 MB for a
small one), so only LSTMs whose recurrent weight per direction has ``MIN_RECURRENT_WEIGHT``
elements or more can take it ("original": +284 MB; "small" gains nothing measurable and is not
offered it): ``MklKernel`` is then a candidate of the kernel plan, and the fixed rule's kernel at
``MIN_ROWS`` rows or more (:mod:`flair_elmo_modes.bilm.fast.kernels`).
"""

from __future__ import annotations

import torch

# Rows the packed weights are laid out for.
PACK_ROWS = 32
# LSTM steps of fewer rows take mm: padding them to PACK_ROWS would cost more than it gains.
MIN_ROWS = 12
# Elements of one direction's (4 * cell_dim, projection_dim) recurrent weight from which an LSTM
# takes packed products ("original": 8.4 M; "medium": 2.1 M; "small": 0.5 M).
MIN_RECURRENT_WEIGHT = 4 * 1024 * 1024


def usable(like: torch.Tensor) -> bool:
    """Whether MKL's packed products can serve tensors like ``like`` (float32, CPU, MKL build)."""
    return (
        like.device.type == "cpu"
        and like.dtype == torch.float32
        and torch.backends.mkl.is_available()
        and hasattr(torch.ops.mkl, "_mkl_linear")
        and hasattr(torch.ops.mkl, "_mkl_reorder_linear_weight")
    )


def pack(weight: torch.Tensor) -> torch.Tensor:
    """An ``(out, in)`` weight packed for products of ``PACK_ROWS`` rows (a copy; keep it in a
    :class:`~flair_elmo_modes.bilm.fast.derived.DerivedTensors`, which rebuilds it when ``weight`` changes)."""
    return torch.ops.mkl._mkl_reorder_linear_weight(weight.detach().contiguous(), PACK_ROWS)


def linear(
    inputs: torch.Tensor,
    packed: torch.Tensor,
    weight: torch.Tensor,
    out: torch.Tensor,
    add: torch.Tensor | None = None,
    scratch: torch.Tensor | None = None,
) -> torch.Tensor:
    """``out = inputs @ weight.T (+ add)`` for ``(n, in)`` inputs, with ``packed = pack(weight)``.

    Args:
        inputs: ``(n, in)``.
        packed: from :func:`pack`.
        weight: the ``(out, in)`` weight itself (MKL's wrapper wants it beside the packed copy).
        out: ``(n, out)``, written.
        add: ``(n, out)`` added to the product, or None.
        scratch: ``(PACK_ROWS, in)`` buffer for padding the last chunk (allocated when None).

    Returns:
        ``out``.
    """
    n = len(inputs)
    for start in range(0, n, PACK_ROWS):
        end = min(start + PACK_ROWS, n)
        rows = end - start
        extra = None if add is None else add[start:end]  # may be out itself
        chunk = inputs[start:end]
        if rows < PACK_ROWS:
            if scratch is None:
                scratch = inputs.new_zeros(PACK_ROWS, inputs.shape[1])
            scratch[:rows] = chunk
            chunk = scratch
        product = torch.ops.mkl._mkl_linear(chunk, packed, weight, None, PACK_ROWS)[:rows]
        if extra is None:
            out[start:end] = product
        else:
            torch.add(product, extra, out=out[start:end])
    return out
