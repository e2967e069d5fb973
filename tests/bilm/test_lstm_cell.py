"""A layer as a value and the plain step: one step of :class:`TorchKernel` against the LSTM formula
written out here per direction and row, with clipping reached and without clipping."""

from __future__ import annotations

import pytest
import torch

from flair_elmo_modes.bilm.fast.derived import DerivedTensors
from flair_elmo_modes.bilm.lstm_cell import TORCH, LayerWeights, TorchKernel
from tests.helpers import float64_tolerance

CELL, PROJ, INPUT, ROWS = 5, 3, 4, 6


def a_layer(clip: float, dtype: torch.dtype = torch.float64) -> LayerWeights:
    generator = torch.Generator().manual_seed(1)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    return LayerWeights(
        index=0,
        weight_ih=normal(2, 4 * CELL, INPUT),
        weight_hh=normal(2, 4 * CELL, PROJ),
        bias=normal(2, 4 * CELL),
        weight_hr=normal(2, PROJ, CELL),
        cell_dim=CELL,
        projection_dim=PROJ,
        cell_clip=clip,
        proj_clip=clip,
        derived=DerivedTensors(),
    )


def formula(layer: LayerWeights, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One step, one direction and one row at a time: gates (input, forget, cell, output) =
    ``W_ih x + b + W_hh h``; ``c' = sigmoid(i) tanh(g) + sigmoid(f) c``, clipped;
    ``h' = W_hr (sigmoid(o) tanh(c'))``, clipped (a clip value of 0: none)."""
    hidden, memory = torch.empty_like(h), torch.empty_like(c)
    for d in (0, 1):
        for row in range(x.shape[1]):
            gates = layer.weight_ih[d] @ x[d, row] + layer.bias[d] + layer.weight_hh[d] @ h[d, row]
            i, f, g, o = gates.split(CELL)
            new_c = torch.sigmoid(i) * torch.tanh(g) + torch.sigmoid(f) * c[d, row]
            if layer.cell_clip:
                new_c = new_c.clamp(-layer.cell_clip, layer.cell_clip)
            new_h = layer.weight_hr[d] @ (torch.sigmoid(o) * torch.tanh(new_c))
            if layer.proj_clip:
                new_h = new_h.clamp(-layer.proj_clip, layer.proj_clip)
            hidden[d, row], memory[d, row] = new_h, new_c
    return hidden, memory


def plain_step(layer: LayerWeights, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    kernel = TorchKernel(layer)
    return kernel.step(kernel.project(x), h, c)


@pytest.mark.parametrize("clip", [1.5, 0.0], ids=["clipped", "no clip"])
def test_the_plain_step_is_the_lstm_formula(clip: float) -> None:
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, ROWS, INPUT, generator=generator, dtype=torch.float64)
    h = torch.randn(2, ROWS, PROJ, generator=generator, dtype=torch.float64)
    c = 3 * torch.randn(2, ROWS, CELL, generator=generator, dtype=torch.float64)  # some beyond the clip
    layer = a_layer(clip)
    before = [t.clone() for t in (x, h, c)]
    hidden, memory = plain_step(layer, x, h, c)
    expected = formula(layer, x, h, c)
    float32 = formula(a_layer(clip, torch.float32), x.float(), h.float(), c.float())
    for got, want, want32 in zip((hidden, memory), expected, float32, strict=True):
        # batched products sum in another order: float64 rounding (float64_tolerance)
        torch.testing.assert_close(got, want, rtol=0, atol=float64_tolerance(want32, want))
    if clip:  # the clip was reached, both on the memory and on the output
        assert float(memory.abs().max()) == clip and float(hidden.abs().max()) == clip
    else:
        assert float(memory.abs().max()) > 1.5 and float(hidden.abs().max()) > 1.5
    for original, now in zip(before, (x, h, c), strict=True):  # out of place: autograd's step
        torch.testing.assert_close(now, original, rtol=0, atol=0)


def test_the_plain_kernel_is_out_of_place_and_named() -> None:
    kernel = TorchKernel(a_layer(0.0))
    assert kernel.name == TORCH == "TorchKernel" and not kernel.in_place and kernel.layer.input_dim == INPUT
    x = torch.randn(2, ROWS, INPUT, dtype=torch.float64, requires_grad=True)
    h, c = torch.zeros(2, ROWS, PROJ, dtype=torch.float64), torch.zeros(2, ROWS, CELL, dtype=torch.float64)
    hidden, memory = kernel.step(kernel.project(x), h, c)
    (hidden.sum() + memory.sum()).backward()  # autograd sees every op
    assert x.grad is not None and x.grad.abs().sum() > 0
