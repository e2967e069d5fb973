"""oneDNN's pre-packed products: a row's result does not depend on the other rows, as accurate as a
float32 dot product summed in one chain; and which path the character encoder's products take."""

from __future__ import annotations

import pytest
import torch

from flair_elmo_modes.bilm.fast import onednn
from flair_elmo_modes.bilm.fast.derived import DerivedTensors
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from tests.bilm.helpers import needs_onednn
from tests.helpers import assert_as_accurate


@needs_onednn
@pytest.mark.parametrize("step", [False, True])
@pytest.mark.parametrize(("in_dim", "out_dim"), [(12, 40), (2048, 64)])
def test_onednn_rows_do_not_depend_on_the_other_rows(in_dim: int, out_dim: int, step: bool) -> None:
    # 600 rows: chunks of CHUNK_ROWS; the row counts in between are padded unless step=True
    generator = torch.Generator().manual_seed(5)
    weight = torch.randn(out_dim, in_dim, generator=generator) / in_dim**0.5  # outputs of size 1
    bias = torch.randn(out_dim, generator=generator)
    inputs, add = torch.randn(600, in_dim, generator=generator), torch.randn(600, out_dim, generator=generator)
    packed = onednn.pack(weight)
    with torch.inference_mode():
        together = onednn.linear(inputs, packed, bias, add=add, step=step)
        for rows in (slice(0, 1), slice(3, 5), slice(7, 40), slice(40, 297), slice(0, 256), slice(1, 600)):
            alone = onednn.linear(inputs[rows], packed, bias, add=add[rows], step=step)
            torch.testing.assert_close(alone, together[rows], rtol=0, atol=0)
        without_add = onednn.linear(inputs[5:30], packed, step=step)
    # The product itself, against float64: as accurate as the float32 sum of each dot product in
    # one chain, in order, which is how oneDNN adds (onednn.py; MKL's addmm sums blocks of a long
    # product separately, 2-3x more accurately at 2048 terms, by an amount that depends on the CPU).
    exact = torch.addmm((add + bias).double(), inputs.double(), weight.t().double())
    assert_as_accurate(together, chained_product(inputs, weight) + bias + add, exact)
    exact_product = inputs[5:30].double() @ weight.t().double()
    assert_as_accurate(without_add, chained_product(inputs[5:30], weight), exact_product)


def chained_product(inputs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``inputs @ weight.T`` in the inputs' dtype, each dot product summed in one chain, in order."""
    total = inputs.new_zeros(len(inputs), len(weight))
    for k in range(inputs.shape[1]):
        total += inputs[:, k, None] * weight[:, k]
    return total


@needs_onednn
def test_packed_linear_takes_the_path_the_switches_name() -> None:
    generator = torch.Generator().manual_seed(6)
    weight, bias = torch.randn(40, 24, generator=generator), torch.randn(40, generator=generator)
    inputs = torch.randn(20, 24, generator=generator)
    derived = DerivedTensors()
    with torch.no_grad():
        # each compared with the very computation it should be: bitwise
        ordinary = onednn.packed_linear(derived, "w", inputs, weight, bias, [weight])
        torch.testing.assert_close(ordinary, torch.nn.functional.linear(inputs, weight, bias), rtol=0, atol=0)
        assert len(derived) == 0  # no packed copy made
        with fast_paths(batch_invariant=True):
            invariant = onednn.packed_linear(derived, "w", inputs, weight, bias, [weight])
        torch.testing.assert_close(invariant, onednn.linear(inputs, onednn.pack(weight), bias), rtol=0, atol=0)
        assert derived.names() == {"w"}
    trained = weight.clone().requires_grad_()
    with fast_paths(batch_invariant=True):  # autograd must see the product: torch's op, in any mode
        product = onednn.packed_linear(DerivedTensors(), "w", inputs, trained, bias, [trained])
    assert product.requires_grad
    torch.testing.assert_close(product.detach(), ordinary, rtol=0, atol=0)
