"""One layer of ELMo's LSTM stack as its step kernels see it, and the plain step.

:class:`LayerWeights` is a layer's weights, sizes and clip values as one value: the LSTM builds it
(:meth:`BidirectionalLstm.layer <flair_elmo_modes.bilm.lstm.BidirectionalLstm.layer>`) and every
step kernel reads the layer through it alone, never the LSTM module.

:class:`TorchKernel` is the plain step in ``torch`` ops, out of place: the autograd path (training,
fine-tuning), the step of ``fast_paths(enabled=False)``, and the reference every faster kernel
(:mod:`flair_elmo_modes.bilm.fast.kernels`) is tested against. For one direction and one row,
with gates in the order (input, forget, cell, output)::

    i, f, g, o = W_ih x + b + W_hh h                 (4 * cell_dim pre-activations)
    c' = sigmoid(i) * tanh(g) + sigmoid(f) * c       then clipped to [-cell_clip, cell_clip]
    h' = W_hr (sigmoid(o) * tanh(c'))                then clipped to [-proj_clip, proj_clip]

(a clip value of 0 means no clipping). The input projections ``W_ih x + b`` of many steps are one
product (:meth:`TorchKernel.project`), computed before the steps that use them.

Shapes: ``n`` rows run at a step (rows sorted by decreasing length); ``cell`` and ``proj`` are the
cell and projection sizes; dim 0 of every tensor is the direction ([forward, backward]), so each
product covers both directions in one ``bmm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.fast.derived import DerivedTensors

#: The plain kernel's name (in kernel plans, ``fast_paths(kernel=...)`` and a kernel's ``name``).
TORCH = "TorchKernel"


@dataclass(frozen=True, eq=False)
class LayerWeights:
    """Layer ``index`` of the stack: the parameters themselves (not copies, so that values derived
    from them follow their changes) with the names and shapes of PyTorch's ``nn.LSTM``, a leading
    direction dim of 2 ([forward, backward]) and gates in the order (input, forget, cell, output).

    Attributes:
        index: the layer, 0 first (names the copies kept in ``derived``).
        weight_ih: ``(2, 4 * cell_dim, input_dim)``.
        weight_hh: ``(2, 4 * cell_dim, projection_dim)``.
        bias: ``(2, 4 * cell_dim)``.
        weight_hr: ``(2, projection_dim, cell_dim)``.
        cell_dim, projection_dim: the sizes.
        cell_clip, proj_clip: clip values of the memory and of the projected output (0: none).
        derived: where kernels keep values derived from the weights (packed or bf16 copies),
            rebuilt when a weight changes (the LSTM's, see :mod:`flair_elmo_modes.bilm.fast.derived`).
    """

    index: int
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias: torch.Tensor
    weight_hr: torch.Tensor
    cell_dim: int
    projection_dim: int
    cell_clip: float
    proj_clip: float
    derived: DerivedTensors

    @property
    def input_dim(self) -> int:
        return self.weight_ih.shape[2]

    def parameters(self) -> list[torch.Tensor]:
        """``[weight_ih, weight_hh, bias, weight_hr]``."""
        return [self.weight_ih, self.weight_hh, self.bias, self.weight_hr]

    def parameter_name(self, name: str) -> str:
        """The LSTM's name of weight ``name`` of this layer: ``"weight_hh"`` -> ``"weight_hh_l1"``."""
        return f"{name}_l{self.index}"


class Kernel(Protocol):
    """What the LSTM's step loop (:meth:`BidirectionalLstm._run_layer
    <flair_elmo_modes.bilm.lstm.BidirectionalLstm._run_layer>`) calls for one layer.

    Attributes:
        name: the kernel's name (``"TorchKernel"``, ``"OneDnnKernel:bf16"``, ...).
        in_place: whether :meth:`step` writes the new hidden state into ``out`` and updates
            ``memory`` in place (else it returns new tensors, and ``out`` is None).
        layer: the layer it computes.
    """

    name: str
    in_place: bool
    layer: LayerWeights

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(2, rows, input_dim)`` -> ``(2, rows, 4 * cell)`` input projections plus bias."""
        ...

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: see :meth:`TorchKernel.step`."""
        ...


class TorchKernel:
    """The plain step of ``layer`` in ``torch`` ops, out of place (``bmm`` over the two directions).

    Args:
        layer: the layer.
    """

    in_place = False
    name = TORCH

    def __init__(self, layer: LayerWeights) -> None:
        self.layer = layer
        self.weight_ih = layer.weight_ih.transpose(1, 2)  # (2, input_dim, 4 * cell)
        self.weight_hh = layer.weight_hh.transpose(1, 2)  # (2, proj, 4 * cell)
        self.weight_hr = layer.weight_hr.transpose(1, 2)  # (2, cell, proj)
        self.bias = layer.bias.unsqueeze(1)  # (2, 1, 4 * cell)

    def project(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(2, rows, input_dim)`` -> ``(2, rows, 4 * cell)`` input projections plus bias."""
        return torch.baddbmm(self.bias, inputs, self.weight_ih)

    def step(
        self, projected: torch.Tensor, previous: torch.Tensor, memory: torch.Tensor, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step.

        Args:
            projected: ``(2, n, 4 * cell)`` this step's input projections (an in-place kernel
                overwrites them).
            previous: ``(2, n, proj)`` the previous hidden state.
            memory: ``(2, n, cell)`` the previous memory (an in-place kernel updates it).
            out: ``(2, n, proj)`` where an in-place kernel writes the new hidden state; None here.

        Returns:
            The new hidden state ``(2, n, proj)`` (``out`` when in place) and memory ``(2, n, cell)``.
        """
        layer, cell = self.layer, self.layer.cell_dim
        gates = torch.baddbmm(projected, previous, self.weight_hh)  # (2, n, 4 * cell)
        input_forget = torch.sigmoid(gates[..., : 2 * cell])
        candidate = torch.tanh(gates[..., 2 * cell : 3 * cell])
        output_gate = torch.sigmoid(gates[..., 3 * cell :])
        memory = input_forget[..., :cell] * candidate + input_forget[..., cell:] * memory
        if layer.cell_clip:
            memory = memory.clamp(-layer.cell_clip, layer.cell_clip)
        hidden = torch.bmm(output_gate * torch.tanh(memory), self.weight_hr)  # (2, n, proj)
        if layer.proj_clip:
            hidden = hidden.clamp(-layer.proj_clip, layer.proj_clip)
        return hidden, memory
