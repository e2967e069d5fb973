"""MKL's pre-packed products: the product, for any number of rows (chunks of ``PACK_ROWS``, the last
padded), written to ``out`` or added to ``add`` (which may be ``out`` itself)."""

from __future__ import annotations

import pytest
import torch

from flair_elmo_modes.bilm.fast import mkl
from tests.bilm.helpers import needs_mkl
from tests.helpers import assert_as_accurate


@needs_mkl
@pytest.mark.parametrize("rows", [1, mkl.MIN_ROWS - 1, mkl.MIN_ROWS, mkl.PACK_ROWS, 2 * mkl.PACK_ROWS + 5, 77])
def test_mkl_linear_is_the_product(rows: int) -> None:
    generator = torch.Generator().manual_seed(rows)
    weight = torch.randn(40, 24, generator=generator) / 24**0.5
    inputs, add = torch.randn(rows, 24, generator=generator), torch.randn(rows, 40, generator=generator)
    packed = mkl.pack(weight)
    exact = inputs.double() @ weight.t().double()
    product = mkl.linear(inputs, packed, weight, torch.empty(rows, 40))
    in_place = add.clone()
    mkl.linear(inputs, packed, weight, in_place, add=in_place)  # out is add, as the LSTM steps use it
    # as accurate as torch's float32 product, against float64
    assert_as_accurate(product, inputs @ weight.t(), exact)
    assert_as_accurate(in_place, torch.addmm(add, inputs, weight.t()), exact + add.double())
