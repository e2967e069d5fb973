"""LSTM step kernels: what one time step of one layer computes, for both directions at once.

:meth:`BidirectionalLstm.forward <flair_elmo_modes.bilm.lstm.BidirectionalLstm.forward>` runs one
step loop; :func:`choose_kernel` picks, once per forward, the kernel its steps call:

- :class:`TorchKernel` with ``in_place=False``: plain ``torch`` ops, out of place; the autograd
  path (training, fine-tuning) and the reference every other kernel is tested against.
- :class:`TorchKernel` with ``in_place=True``: the same ops writing into preallocated buffers
  (inference).
- :class:`MklKernel`: :class:`TorchKernel` in place whose steps of many rows multiply by MKL's
  pre-packed weights (float32 CPU inference of LSTMs with large recurrent weights, see
  :mod:`flair_elmo_modes.bilm.mkl`).
- :class:`OneDnnKernel`: float32 CPU inference with oneDNN's pre-packed weights, whose result for
  a row does not depend on the other rows (batch-invariant mode, see ``fast_paths``).
- :class:`ReducedKernel`: inference with bf16 or fp16 products (``precision``), through ``bmm``
  or oneDNN's pre-packed weights; gates, memory and outputs stay float32.

Which one an inference forward takes is measured on the machine (:mod:`flair_elmo_modes.bilm.kernel_plan`)
among the kernels of :func:`candidates`, or, with planning off, :func:`kernel_name`'s fixed rule.

Shapes: ``n`` rows run at a step (rows sorted by decreasing length); ``cell`` and ``proj`` are the
cell and projection sizes; dim 0 of every tensor is the direction ([forward, backward]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from flair_elmo_modes.bilm import fast_paths, mkl, onednn
from flair_elmo_modes.bilm.precision import product_dtype

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.lstm import BidirectionalLstm

# Kernel names: what kernel_name and the plan return, and what a kernel's `name` says.
TORCH = "TorchKernel"  # out of place: autograd, and the plain path
TORCH_IN_PLACE = "TorchKernel:in_place"
MKL = "MklKernel"
ONEDNN = "OneDnnKernel"


class TorchKernel:
    """Layer ``k``'s steps in plain torch ops (``bmm`` over the two directions).

    Args:
        lstm: the stack.
        k: the layer.
        batch: rows of the batch (sizes the in-place buffer).
        in_place: write into preallocated buffers (no autograd).
    """

    def __init__(self, lstm: BidirectionalLstm, k: int, batch: int, in_place: bool) -> None:
        self.lstm = lstm
        self.in_place = in_place
        self.name = TORCH_IN_PLACE if in_place else TORCH
        self.weight_ih = getattr(lstm, f"weight_ih_l{k}").transpose(1, 2)  # (2, input_dim, 4 * cell)
        self.weight_hh = getattr(lstm, f"weight_hh_l{k}").transpose(1, 2)  # (2, proj, 4 * cell)
        self.weight_hr = getattr(lstm, f"weight_hr_l{k}").transpose(1, 2)  # (2, cell, proj)
        self.bias = getattr(lstm, f"bias_l{k}").unsqueeze(1)  # (2, 1, 4 * cell)
        self._cell_outputs = self.bias.new_empty(2, batch, lstm.cell_dim) if in_place else None

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(2, rows, input_dim)`` -> ``(2, rows, 4 * cell)`` input projections plus bias."""
        return torch.baddbmm(self.bias, inputs, self.weight_ih)

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step.

        Args:
            projected: ``(2, n, 4 * cell)`` this step's input projections (overwritten in place).
            previous: ``(2, n, proj)`` the previous hidden state.
            memory: ``(2, n, cell)`` the previous memory (updated in place when ``in_place``).
            out: ``(2, n, proj)`` where an in-place kernel writes the new hidden state (None for
                an out-of-place kernel).

        Returns:
            The new hidden state ``(2, n, proj)`` (``out`` when in place) and memory ``(2, n, cell)``.
        """
        lstm, cell = self.lstm, self.lstm.cell_dim
        if not self.in_place:
            gates = torch.baddbmm(projected, previous, self.weight_hh)  # (2, n, 4 * cell)
            input_forget = torch.sigmoid(gates[..., : 2 * cell])
            candidate = torch.tanh(gates[..., 2 * cell : 3 * cell])
            output_gate = torch.sigmoid(gates[..., 3 * cell :])
            memory = input_forget[..., :cell] * candidate + input_forget[..., cell:] * memory
            if lstm.cell_clip:
                memory = memory.clamp(-lstm.cell_clip, lstm.cell_clip)
            hidden = torch.bmm(output_gate * torch.tanh(memory), self.weight_hr)  # (2, n, proj)
            if lstm.proj_clip:
                hidden = hidden.clamp(-lstm.proj_clip, lstm.proj_clip)
            return hidden, memory
        assert self._cell_outputs is not None
        gates = projected.baddbmm_(previous, self.weight_hh)  # (2, n, 4 * cell)
        cell_output = cell_in_place(lstm, gates, memory, self._cell_outputs[:, : gates.shape[1]])
        return clip_in_place(lstm, torch.bmm(cell_output, self.weight_hr, out=out)), memory


class MklKernel(TorchKernel):
    """:class:`TorchKernel` in place, with the products of steps of ``mkl.MIN_ROWS`` to
    ``mkl.PACK_ROWS`` rows against MKL's pre-packed weights (one product per direction, padded to
    ``PACK_ROWS`` rows); other steps take ``bmm``. (More rows would need several packed products
    per step, each reading the whole packed weight: slower than ``bmm`` at 128 rows.)

    The packed copies live in ``lstm.derived`` (rebuilt when a weight changes).
    """

    def __init__(self, lstm: BidirectionalLstm, k: int, batch: int) -> None:
        super().__init__(lstm, k, batch, in_place=True)
        self.name = MKL
        self.recurrent = [getattr(lstm, f"weight_hh_l{k}")[d] for d in (0, 1)]  # (4 * cell, proj) each
        self.projection = [getattr(lstm, f"weight_hr_l{k}")[d] for d in (0, 1)]  # (proj, cell) each
        self.recurrent_packed = self._packed(f"weight_hh_l{k}")
        self.projection_packed = self._packed(f"weight_hr_l{k}")
        self._scratch = [self.bias.new_zeros(mkl.PACK_ROWS, dim) for dim in (lstm.projection_dim, lstm.cell_dim)]

    def _packed(self, name: str) -> list[torch.Tensor]:
        weight = getattr(self.lstm, name)  # (2, out, in)
        return [self.lstm.derived.get(f"mkl.{name}.{d}", [weight], lambda d=d: mkl.pack(weight[d])) for d in (0, 1)]

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`TorchKernel.step` in place."""
        if not mkl.MIN_ROWS <= previous.shape[1] <= mkl.PACK_ROWS:
            return super().step(projected, previous, memory, out)
        assert self._cell_outputs is not None and out is not None
        hidden_scratch, cell_scratch = self._scratch
        for d in (0, 1):  # gates, written over the input projections
            mkl.linear(
                previous[d], self.recurrent_packed[d], self.recurrent[d], projected[d], projected[d], hidden_scratch
            )
        cell_output = cell_in_place(self.lstm, projected, memory, self._cell_outputs[:, : projected.shape[1]])
        for d in (0, 1):
            mkl.linear(cell_output[d], self.projection_packed[d], self.projection[d], out[d], None, cell_scratch)
        return clip_in_place(self.lstm, out), memory


class OneDnnKernel:
    """Layer ``k``'s steps with oneDNN's pre-packed weights, one product per direction, in place.

    The packed copies live in ``lstm.derived`` (rebuilt when a weight changes, see
    :mod:`flair_elmo_modes.bilm.derived`). A row's result does not depend on the other rows, so
    among batches that take this kernel a sentence's vectors are bitwise the same.
    """

    in_place = True
    name = ONEDNN

    def __init__(self, lstm: BidirectionalLstm, k: int, batch: int) -> None:
        self.lstm = lstm
        self.weight_ih = self._packed(f"weight_ih_l{k}")
        self.weight_hh = self._packed(f"weight_hh_l{k}")
        self.weight_hr = self._packed(f"weight_hr_l{k}")
        self.bias = getattr(lstm, f"bias_l{k}")  # (2, 4 * cell)
        self._cell_outputs = self.bias.new_empty(2, batch, lstm.cell_dim)

    def _packed(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        weight = getattr(self.lstm, name)  # (2, out, in)
        return tuple(  # type: ignore[return-value]
            self.lstm.derived.get(f"{name}.{d}", [weight], lambda d=d: onednn.pack(weight[d])) for d in (0, 1)
        )

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(2, rows, input_dim)`` -> ``(2, rows, 4 * cell)``."""
        return torch.stack([onednn.linear(inputs[d], self.weight_ih[d], self.bias[d]) for d in (0, 1)])

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`TorchKernel.step` in place."""
        gates = torch.stack(
            [onednn.linear(previous[d], self.weight_hh[d], add=projected[d], step=True) for d in (0, 1)]
        )  # (2, n, 4 * cell)
        cell_output = cell_in_place(self.lstm, gates, memory, self._cell_outputs[:, : gates.shape[1]])
        hidden = torch.stack([onednn.linear(cell_output[d], self.weight_hr[d], step=True) for d in (0, 1)], out=out)
        return clip_in_place(self.lstm, hidden), memory


class ReducedKernel:
    """Layer ``k``'s steps with bf16 or fp16 products, in place: each product takes its inputs and
    weights in ``dtype`` (float32 accumulation inside the GEMM), and its result joins float32
    tensors: the input projections plus bias, the gates, the memory, the hidden state. So only the
    products round to ``dtype``, and the recurrence carries float32 state.

    Args:
        lstm: the stack.
        k: the layer.
        batch: rows of the batch (sizes the in-place buffer).
        dtype: ``torch.bfloat16`` or ``torch.float16``.
        packed: multiply by oneDNN's pre-packed weights (CPU bf16, see :mod:`~flair_elmo_modes.bilm.onednn`;
            a row's result then does not depend on the other rows); else ``bmm`` by copies of the
            weights in ``dtype``.
    """

    in_place = True

    def __init__(self, lstm: BidirectionalLstm, k: int, batch: int, dtype: torch.dtype, packed: bool) -> None:
        self.lstm = lstm
        self.dtype = dtype
        self.packed = packed
        self.name = reduced_name(ONEDNN if packed else TORCH, dtype)
        self.weights = [self._weight(f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "weight_hr")]
        self.bias = getattr(lstm, f"bias_l{k}").unsqueeze(1)  # (2, 1, 4 * cell), float32
        self._cell_outputs = self.bias.new_empty(2, batch, lstm.cell_dim)

    def _weight(self, name: str) -> list[torch.Tensor] | torch.Tensor:
        """Direction-wise packed copies, or one ``(2, in, out)`` copy in ``dtype`` for ``bmm``."""
        weight = getattr(self.lstm, name)  # (2, out, in)
        tag = str(self.dtype).removeprefix("torch.")
        if self.packed:
            return [
                self.lstm.derived.get(f"{tag}.{name}.{d}", [weight], lambda d=d: onednn.pack(weight[d].to(self.dtype)))
                for d in (0, 1)
            ]
        return self.lstm.derived.get(f"{tag}.{name}", [weight], lambda: weight.to(self.dtype).transpose(1, 2))

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
        """As :meth:`TorchKernel.step` in place."""
        assert out is not None
        for d, product in enumerate(self._products(previous, 1, step=True)):
            projected[d].add_(product)  # the gates, (n, 4 * cell) float32 per direction
        cell_output = cell_in_place(self.lstm, projected, memory, self._cell_outputs[:, : projected.shape[1]])
        for d, product in enumerate(self._products(cell_output, 2, step=True)):
            out[d].copy_(product)
        return clip_in_place(self.lstm, out), memory


Kernel = TorchKernel | MklKernel | OneDnnKernel | ReducedKernel


def reduced_name(base: str, dtype: torch.dtype) -> str:
    """``"OneDnnKernel:bf16"``, ``"TorchKernel:fp16"``: the name of a :class:`ReducedKernel`."""
    return f"{base}:{ {torch.bfloat16: 'bf16', torch.float16: 'fp16'}[dtype] }"


def cell_in_place(
    lstm: BidirectionalLstm, gates: torch.Tensor, memory: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """The cell of one step, in place: the arithmetic of the out-of-place step.

    Args:
        lstm: the stack (cell size, clip).
        gates: ``(2, n, 4 * cell)`` pre-activations; overwritten.
        memory: ``(2, n, cell)``, updated in place (clipped).
        out: ``(2, n, cell)``, receives ``output_gate * tanh(memory)``.

    Returns:
        ``out``.
    """
    cell = lstm.cell_dim
    input_gate, forget_gate = gates[..., :cell], gates[..., cell : 2 * cell]
    candidate, output_gate = gates[..., 2 * cell : 3 * cell], gates[..., 3 * cell :]
    gates[..., : 2 * cell].sigmoid_()
    candidate.tanh_()
    output_gate.sigmoid_()
    memory.mul_(forget_gate).addcmul_(input_gate, candidate)
    if lstm.cell_clip:
        memory.clamp_(-lstm.cell_clip, lstm.cell_clip)
    return torch.tanh(memory, out=out).mul_(output_gate)


def clip_in_place(lstm: BidirectionalLstm, hidden: torch.Tensor) -> torch.Tensor:
    """``hidden`` clipped to the projection clip, in place."""
    if lstm.proj_clip:
        hidden.clamp_(-lstm.proj_clip, lstm.proj_clip)
    return hidden


def candidates(cell_dim: int, projection_dim: int, like: torch.Tensor) -> list[str]:
    """The inference kernels that can serve an LSTM layer on tensors like ``like`` (device, dtype)
    under the ``fast_paths`` and precision in force, the precision's plain kernel first.

    float32: ``TorchKernel:in_place``, ``MklKernel`` (large recurrent weights, see
    :mod:`~flair_elmo_modes.bilm.mkl`), ``OneDnnKernel``. bf16/fp16: ``TorchKernel:bf16``,
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
    precision in force, without the measured plan: the fixed rule. A pure function of shapes.

    - autograd, or ``in_place`` off: ``TorchKernel`` (out of place);
    - ``fast_paths(kernel=NAME)``: that kernel (a ``ValueError`` where it cannot run);
    - batch-invariant mode: the oneDNN kernel of the precision (rows independent of each other);
    - reduced precision: ``OneDnnKernel:bf16`` on CPUs, else ``TorchKernel:<precision>``;
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


def build_kernel(name: str, lstm: BidirectionalLstm, k: int, batch: int) -> Kernel:
    """The kernel called ``name`` for layer ``k`` of a forward of ``batch`` rows."""
    if name == ONEDNN:
        return OneDnnKernel(lstm, k, batch)
    if name == MKL:
        return MklKernel(lstm, k, batch)
    if name in (TORCH, TORCH_IN_PLACE):
        return TorchKernel(lstm, k, batch, in_place=name == TORCH_IN_PLACE)
    base, _, precision = name.partition(":")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return ReducedKernel(lstm, k, batch, dtype, packed=base == ONEDNN)
