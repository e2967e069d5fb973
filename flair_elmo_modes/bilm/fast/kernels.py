"""The LSTM's inference step kernels: what one time step of one layer computes, fast, for both
directions at once.

:meth:`BidirectionalLstm.forward <flair_elmo_modes.bilm.lstm.BidirectionalLstm.forward>` runs one
step loop; :func:`~flair_elmo_modes.bilm.fast.kernel_plan.choose_kernel` picks, once per forward
and layer, the kernel its steps call:

- :class:`~flair_elmo_modes.bilm.lstm_cell.TorchKernel` (in ``bilm/lstm_cell.py``): the plain
  step in ``torch`` ops, out of place; the autograd path (training, fine-tuning), the step of
  ``fast_paths(enabled=False)`` or ``in_place=False``, and the reference every kernel here is
  tested against.
- :class:`InPlaceTorchKernel` (``"TorchKernel:in_place"``): the same ops writing into
  preallocated buffers.
- :class:`MklKernel`: :class:`InPlaceTorchKernel` whose steps of many rows multiply by MKL's
  pre-packed weights (float32 CPU inference of LSTMs with large recurrent weights, see
  :mod:`flair_elmo_modes.bilm.fast.mkl`).
- :class:`OneDnnKernel`: float32 CPU inference with oneDNN's pre-packed weights, whose result for
  a row does not depend on the other rows (the kernel of batch-invariant mode, see ``fast_paths``).
- :class:`ReducedKernel`: inference with bf16 or fp16 products (``precision``), through ``bmm``
  or oneDNN's pre-packed weights; gates, memory and outputs stay float32.

Each kernel reads its layer through a :class:`~flair_elmo_modes.bilm.lstm_cell.LayerWeights` value
only (this module does not know the LSTM module), and keeps its weight copies in the value's
``derived``. Which kernel an inference forward takes is measured on the machine
(:mod:`flair_elmo_modes.bilm.fast.kernel_plan`) among the kernels of :func:`candidates`, or, with
planning off, :func:`kernel_name`'s fixed rule.

Shapes: ``n`` rows run at a step (rows sorted by decreasing length); ``cell`` and ``proj`` are the
cell and projection sizes; dim 0 of every tensor is the direction ([forward, backward]).
"""

from __future__ import annotations

import torch

from flair_elmo_modes.bilm.fast import fast_paths, mkl, onednn
from flair_elmo_modes.bilm.lstm_cell import TORCH, Kernel, LayerWeights, TorchKernel
from flair_elmo_modes.bilm.precision import product_dtype

# Kernel names: what kernel_name and the plan return, and what a kernel's `name` says.
# TORCH ("TorchKernel", out of place: autograd, and the plain path) is lstm_cell's.
TORCH_IN_PLACE = "TorchKernel:in_place"
MKL = "MklKernel"
ONEDNN = "OneDnnKernel"


class InPlaceTorchKernel(TorchKernel):
    """:class:`~flair_elmo_modes.bilm.lstm_cell.TorchKernel`'s ops in place: each step overwrites
    its input projections with the gates, updates ``memory`` and writes the hidden state into
    ``out`` (no autograd).

    Args:
        layer: the layer.
        batch: rows of the batch (sizes the in-place buffer).
    """

    in_place = True
    name = TORCH_IN_PLACE

    def __init__(self, layer: LayerWeights, batch: int) -> None:
        super().__init__(layer)
        self._cell_outputs = self.bias.new_empty(2, batch, layer.cell_dim)

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`TorchKernel.step <flair_elmo_modes.bilm.lstm_cell.TorchKernel.step>`, in place."""
        gates = projected.baddbmm_(previous, self.weight_hh)  # (2, n, 4 * cell)
        cell_output = cell_in_place(self.layer, gates, memory, self._cell_outputs[:, : gates.shape[1]])
        return clip_in_place(self.layer, torch.bmm(cell_output, self.weight_hr, out=out)), memory


class MklKernel(InPlaceTorchKernel):
    """:class:`InPlaceTorchKernel`, with the products of steps of ``mkl.MIN_ROWS`` to
    ``mkl.PACK_ROWS`` rows against MKL's pre-packed weights (one product per direction, padded to
    ``PACK_ROWS`` rows); other steps take ``bmm``. (More rows would need several packed products
    per step, each reading the whole packed weight: slower than ``bmm`` at 128 rows.)

    The packed copies live in ``layer.derived`` (rebuilt when a weight changes).
    """

    name = MKL

    def __init__(self, layer: LayerWeights, batch: int) -> None:
        super().__init__(layer, batch)
        self.recurrent = [layer.weight_hh[d] for d in (0, 1)]  # (4 * cell, proj) each
        self.projection = [layer.weight_hr[d] for d in (0, 1)]  # (proj, cell) each
        self.recurrent_packed = self._packed("weight_hh")
        self.projection_packed = self._packed("weight_hr")
        self._scratch = [self.bias.new_zeros(mkl.PACK_ROWS, dim) for dim in (layer.projection_dim, layer.cell_dim)]

    def _packed(self, name: str) -> list[torch.Tensor]:
        weight = getattr(self.layer, name)  # (2, out, in)
        key = f"mkl.{self.layer.parameter_name(name)}"
        return [self.layer.derived.get(f"{key}.{d}", [weight], lambda d=d: mkl.pack(weight[d])) for d in (0, 1)]

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`InPlaceTorchKernel.step`."""
        if not mkl.MIN_ROWS <= previous.shape[1] <= mkl.PACK_ROWS:
            return super().step(projected, previous, memory, out)
        assert out is not None
        hidden_scratch, cell_scratch = self._scratch
        for d in (0, 1):  # gates, written over the input projections
            mkl.linear(
                previous[d], self.recurrent_packed[d], self.recurrent[d], projected[d], projected[d], hidden_scratch
            )
        cell_output = cell_in_place(self.layer, projected, memory, self._cell_outputs[:, : projected.shape[1]])
        for d in (0, 1):
            mkl.linear(cell_output[d], self.projection_packed[d], self.projection[d], out[d], None, cell_scratch)
        return clip_in_place(self.layer, out), memory


class OneDnnKernel:
    """A layer's steps with oneDNN's pre-packed weights, one product per direction, in place.

    The packed copies live in ``layer.derived`` (rebuilt when a weight changes, see
    :mod:`flair_elmo_modes.bilm.fast.derived`). A row's result does not depend on the other rows, so
    among batches that take this kernel a sentence's vectors are bitwise the same.

    Args:
        layer: the layer.
        batch: rows of the batch (sizes the in-place buffer).
    """

    in_place = True
    name = ONEDNN

    def __init__(self, layer: LayerWeights, batch: int) -> None:
        self.layer = layer
        self.weight_ih = self._packed("weight_ih")
        self.weight_hh = self._packed("weight_hh")
        self.weight_hr = self._packed("weight_hr")
        self.bias = layer.bias  # (2, 4 * cell)
        self._cell_outputs = self.bias.new_empty(2, batch, layer.cell_dim)

    def _packed(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        weight = getattr(self.layer, name)  # (2, out, in)
        key = self.layer.parameter_name(name)
        return tuple(  # type: ignore[return-value]
            self.layer.derived.get(f"{key}.{d}", [weight], lambda d=d: onednn.pack(weight[d])) for d in (0, 1)
        )

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(2, rows, input_dim)`` -> ``(2, rows, 4 * cell)``."""
        return torch.stack([onednn.linear(inputs[d], self.weight_ih[d], self.bias[d]) for d in (0, 1)])

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`InPlaceTorchKernel.step`."""
        gates = torch.stack(
            [onednn.linear(previous[d], self.weight_hh[d], add=projected[d], step=True) for d in (0, 1)]
        )  # (2, n, 4 * cell)
        cell_output = cell_in_place(self.layer, gates, memory, self._cell_outputs[:, : gates.shape[1]])
        hidden = torch.stack([onednn.linear(cell_output[d], self.weight_hr[d], step=True) for d in (0, 1)], out=out)
        return clip_in_place(self.layer, hidden), memory


class ReducedKernel:
    """A layer's steps with bf16 or fp16 products, in place: each product takes its inputs and
    weights in ``dtype`` (float32 accumulation inside the GEMM), and its result joins float32
    tensors: the input projections plus bias, the gates, the memory, the hidden state. So only the
    products round to ``dtype``, and the recurrence carries float32 state.

    Args:
        layer: the layer.
        batch: rows of the batch (sizes the in-place buffer).
        dtype: ``torch.bfloat16`` or ``torch.float16``.
        packed: multiply by oneDNN's pre-packed weights (CPU bf16, see
            :mod:`~flair_elmo_modes.bilm.fast.onednn`; a row's result then does not depend on the
            other rows); else ``bmm`` by copies of the weights in ``dtype``.
    """

    in_place = True

    def __init__(self, layer: LayerWeights, batch: int, dtype: torch.dtype, packed: bool) -> None:
        self.layer = layer
        self.dtype = dtype
        self.packed = packed
        self.name = reduced_name(ONEDNN if packed else TORCH, dtype)
        self.weights = [self._weight(name) for name in ("weight_ih", "weight_hh", "weight_hr")]
        self.bias = layer.bias.unsqueeze(1)  # (2, 1, 4 * cell), float32
        self._cell_outputs = self.bias.new_empty(2, batch, layer.cell_dim)

    def _weight(self, name: str) -> list[torch.Tensor] | torch.Tensor:
        """Direction-wise packed copies, or one ``(2, in, out)`` copy in ``dtype`` for ``bmm``."""
        weight = getattr(self.layer, name)  # (2, out, in)
        key = f"{str(self.dtype).removeprefix('torch.')}.{self.layer.parameter_name(name)}"
        derived = self.layer.derived
        if self.packed:
            return [
                derived.get(f"{key}.{d}", [weight], lambda d=d: onednn.pack(weight[d].to(self.dtype))) for d in (0, 1)
            ]
        return derived.get(key, [weight], lambda: weight.to(self.dtype).transpose(1, 2))

    def _products(self, inputs: torch.Tensor, which: int, step: bool) -> list[torch.Tensor] | torch.Tensor:
        """``(2, n, in)`` float32 inputs times weight ``which`` (ih, hh, hr), in ``dtype``: one
        ``(n, out)`` product per direction (packed), or ``(2, n, out)`` (``bmm``). Callers add or copy
        each into its float32 destination (no stacked copy of the reduced products)."""
        low = inputs.to(self.dtype)
        weight = self.weights[which]
        if self.packed:
            return [onednn.linear(low[d], weight[d], step=step) for d in (0, 1)]
        return torch.bmm(low, weight)  # type: ignore[arg-type]

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(2, rows, input_dim)`` -> ``(2, rows, 4 * cell)`` float32 input projections plus bias."""
        projected = self.bias.new_empty(2, inputs.shape[1], self.bias.shape[-1])
        for d, product in enumerate(self._products(inputs, 0, step=False)):
            torch.add(product, self.bias[d], out=projected[d])
        return projected

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`InPlaceTorchKernel.step`."""
        assert out is not None
        for d, product in enumerate(self._products(previous, 1, step=True)):
            projected[d].add_(product)  # the gates, (n, 4 * cell) float32 per direction
        cell_output = cell_in_place(self.layer, projected, memory, self._cell_outputs[:, : projected.shape[1]])
        for d, product in enumerate(self._products(cell_output, 2, step=True)):
            out[d].copy_(product)
        return clip_in_place(self.layer, out), memory


def reduced_name(base: str, dtype: torch.dtype) -> str:
    """``"OneDnnKernel:bf16"``, ``"TorchKernel:fp16"``: the name of a :class:`ReducedKernel`."""
    return f"{base}:{ {torch.bfloat16: 'bf16', torch.float16: 'fp16'}[dtype] }"


def cell_in_place(layer: LayerWeights, gates: torch.Tensor, memory: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The cell of one step, in place: the arithmetic of
    :meth:`TorchKernel.step <flair_elmo_modes.bilm.lstm_cell.TorchKernel.step>` between its products.

    Args:
        layer: the layer (cell size, clip).
        gates: ``(2, n, 4 * cell)`` pre-activations; overwritten.
        memory: ``(2, n, cell)``, updated in place (clipped).
        out: ``(2, n, cell)``, receives ``output_gate * tanh(memory)``.

    Returns:
        ``out``.
    """
    cell = layer.cell_dim
    input_gate, forget_gate = gates[..., :cell], gates[..., cell : 2 * cell]
    candidate, output_gate = gates[..., 2 * cell : 3 * cell], gates[..., 3 * cell :]
    gates[..., : 2 * cell].sigmoid_()
    candidate.tanh_()
    output_gate.sigmoid_()
    memory.mul_(forget_gate).addcmul_(input_gate, candidate)
    if layer.cell_clip:
        memory.clamp_(-layer.cell_clip, layer.cell_clip)
    return torch.tanh(memory, out=out).mul_(output_gate)


def clip_in_place(layer: LayerWeights, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden`` clipped to the projection clip, in place."""
    if layer.proj_clip:
        hidden.clamp_(-layer.proj_clip, layer.proj_clip)
    return hidden


def candidates(cell_dim: int, projection_dim: int, like: torch.Tensor) -> list[str]:
    """The inference kernels that can serve an LSTM layer on tensors like ``like`` (device, dtype)
    under the ``fast_paths`` and precision in force, the precision's plain kernel first.

    float32: ``TorchKernel:in_place``, ``MklKernel`` (large recurrent weights, see
    :mod:`~flair_elmo_modes.bilm.fast.mkl`), ``OneDnnKernel``. bf16/fp16: ``TorchKernel:bf16``,
    ``OneDnnKernel:bf16`` (CPU), then the float32 kernels (where reduced products lose, the
    plan falls back to float32 per kernel: more accurate and faster).
    """
    paths = fast_paths.current()
    fp32 = [TORCH_IN_PLACE]
    if paths.allows("mkl_packed") and 4 * cell_dim * projection_dim >= mkl.MIN_RECURRENT_WEIGHT and mkl.usable(like):
        fp32.append(MKL)
    if paths.allows("onednn") and onednn.usable(like):
        fp32.append(ONEDNN)
    dtype = product_dtype(like)
    if dtype is None:
        return fp32
    reduced = [reduced_name(TORCH, dtype)]
    if dtype == torch.bfloat16 and paths.allows("onednn") and onednn.bf16_usable(like):
        reduced.append(reduced_name(ONEDNN, dtype))
    return reduced + fp32


def kernel_name(cell_dim: int, projection_dim: int, batch: int, like: torch.Tensor, grad: bool = False) -> str:
    """The kernel an LSTM layer of ``cell_dim`` cells projected to ``projection_dim`` takes for a
    forward of ``batch`` rows on tensors like ``like`` (device, dtype) under the ``fast_paths`` and
    precision in force, without the measured plan: the fixed rule (no weights, no measurement).
    :func:`~flair_elmo_modes.bilm.fast.kernel_plan.choose_kernel` takes its answer wherever the
    measured plan does not apply (see there).

    - autograd, or ``in_place`` off (``enabled=False`` included): ``TorchKernel`` (out of place);
    - ``fast_paths(kernel=NAME)``: that kernel (a ``ValueError`` where it cannot run);
    - batch-invariant mode: the oneDNN kernel of the precision (rows independent of each other),
      or the precision's plain kernel where oneDNN cannot serve;
    - reduced precision: ``OneDnnKernel:bf16`` where oneDNN packs bf16 weights (CPUs, see
      :func:`~flair_elmo_modes.bilm.fast.onednn.bf16_usable`), else ``TorchKernel:<precision>``;
    - float32: ``MklKernel`` for large recurrent weights at ``mkl.MIN_ROWS`` rows or more, else
      ``TorchKernel:in_place``.

    Args:
        grad: whether autograd must see the steps.
    """
    paths = fast_paths.current()
    if grad or not paths.allows("in_place"):
        return TORCH
    usable = candidates(cell_dim, projection_dim, like)
    if paths.enabled and paths.kernel is not None:
        if paths.kernel not in usable:
            raise ValueError(
                f"fast_paths(kernel={paths.kernel!r}) cannot run here; kernels that can: {', '.join(usable)}"
            )
        return paths.kernel
    if paths.allows("batch_invariant"):
        invariant = [name for name in usable if name.startswith(ONEDNN)]
        return invariant[0] if invariant else usable[0]
    dtype = product_dtype(like)
    if dtype is not None:
        packed = reduced_name(ONEDNN, dtype)
        return packed if packed in usable else reduced_name(TORCH, dtype)
    if MKL in usable and batch >= mkl.MIN_ROWS:
        return MKL
    return TORCH_IN_PLACE


def build_kernel(name: str, layer: LayerWeights, batch: int) -> Kernel:
    """The kernel called ``name`` for ``layer`` in a forward of ``batch`` rows."""
    if name == ONEDNN:
        return OneDnnKernel(layer, batch)
    if name == MKL:
        return MklKernel(layer, batch)
    if name == TORCH:
        return TorchKernel(layer)
    if name == TORCH_IN_PLACE:
        return InPlaceTorchKernel(layer, batch)
    base, _, precision = name.partition(":")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return ReducedKernel(layer, batch, dtype, packed=base == ONEDNN)
