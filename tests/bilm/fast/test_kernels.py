"""The LSTM's inference kernels: which one a forward takes (autograd, the switches, the fixed rule),
and that each computes the plain step up to float32 rounding, whole forwards and single steps of a
layer built by hand (kernels see a layer only through ``LayerWeights``)."""

from __future__ import annotations

import copy

import pytest
import torch

from flair_elmo_modes.bilm.fast import kernel_plan, mkl, onednn
from flair_elmo_modes.bilm.fast.derived import DerivedTensors
from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.fast.kernels import MKL, ONEDNN, TORCH_IN_PLACE, build_kernel, candidates, kernel_name
from flair_elmo_modes.bilm.lstm import BidirectionalLstm, LstmState
from flair_elmo_modes.bilm.lstm_cell import TORCH, Kernel, LayerWeights
from flair_elmo_modes.bilm.precision import computing_in
from tests.bilm.helpers import needs_mkl, needs_onednn
from tests.helpers import assert_as_accurate, random_bilm, tiny_options


def run_without_onednn(lstm: BidirectionalLstm, *args: torch.Tensor) -> tuple[torch.Tensor, LstmState]:
    with fast_paths(onednn=False), torch.inference_mode():
        return lstm(*args)


def kernels_taken(lstm: BidirectionalLstm, *args: torch.Tensor) -> list[str]:
    """The kernel class of each layer in one inference forward."""
    taken: list[str] = []
    original = kernel_plan.choose_kernel

    def recording(*a: object, **k: object) -> Kernel:
        kernel = original(*a, **k)  # type: ignore[arg-type]
        taken.append(kernel.name)
        return kernel

    with pytest.MonkeyPatch.context() as patch, torch.inference_mode():
        patch.setattr("flair_elmo_modes.bilm.lstm.choose_kernel", recording)
        lstm(*args)
    return taken


@needs_onednn
def test_the_kernel_follows_autograd_and_the_switch() -> None:
    lstm = random_bilm(seed=13).lstm
    one_row = (torch.randn(1, 3, 8), torch.tensor([3]))
    many_rows = (torch.randn(16, 2, 8), torch.full((16,), 2))
    with fast_paths(planned=False):  # the fixed rule: MKL's products, in place
        assert kernels_taken(lstm, *one_row) == ["TorchKernel:in_place"] * 2
        assert kernels_taken(lstm, *many_rows) == ["TorchKernel:in_place"] * 2
    with fast_paths(batch_invariant=True):
        assert kernels_taken(lstm, *one_row) == ["OneDnnKernel"] * 2
    with fast_paths(onednn=False):  # a single candidate left: nothing to plan
        assert kernels_taken(lstm, *many_rows) == ["TorchKernel:in_place"] * 2
    with fast_paths(enabled=False):
        assert kernels_taken(lstm, *many_rows) == ["TorchKernel"] * 2  # the plain out-of-place path
    with fast_paths(in_place=False, onednn=True):
        assert kernels_taken(lstm, *many_rows) == ["TorchKernel"] * 2
    with fast_paths(kernel="OneDnnKernel"):
        assert kernels_taken(lstm, *many_rows) == ["OneDnnKernel"] * 2
    with fast_paths(kernel="MklKernel"), pytest.raises(ValueError, match="cannot run here"):
        kernels_taken(lstm, *many_rows)  # MKL's packed products serve large weights only


def test_in_place_and_autograd_paths_agree_in_float32() -> None:
    lstm = random_bilm(seed=8).lstm
    lstm.input_projection_rows = 5  # many projection blocks
    inputs = torch.randn(6, 9, 8, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([9, 2, 0, 9, 4, 1])
    with torch.inference_mode():
        fast, fast_state = lstm(inputs, lengths)
    with torch.no_grad():
        exact, exact_state = copy.deepcopy(lstm).double()(inputs.double(), lengths)
    slow, slow_state = lstm(inputs.requires_grad_(), lengths)
    assert slow.requires_grad
    # two float32 paths (in place, out of place): each within float32 rounding of float64
    assert_as_accurate(fast, slow.detach(), exact)
    assert_as_accurate(fast_state.hidden, slow_state.hidden.detach(), exact_state.hidden)
    assert_as_accurate(fast_state.memory, slow_state.memory.detach(), exact_state.memory)


@needs_onednn
def test_onednn_steps_are_as_accurate_as_bmm_steps() -> None:
    lstm = random_bilm(tiny_options(cell_dim=40, projection_dim=12), seed=13).lstm
    inputs = torch.randn(5, 9, 12, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([9, 1, 4, 9, 0])
    with fast_paths(batch_invariant=True), torch.inference_mode():
        fast, fast_state = lstm(inputs, lengths)
        exact, exact_state = copy.deepcopy(lstm).double()(inputs.double(), lengths)
    assert len(lstm.derived) == 2 * 3 * lstm.n_layers  # (ih, hh, hr) per direction and layer
    expected, expected_state = run_without_onednn(lstm, inputs, lengths)
    assert_as_accurate(fast, expected, exact)
    assert_as_accurate(fast_state.hidden, expected_state.hidden, exact_state.hidden)
    assert_as_accurate(fast_state.memory, expected_state.memory, exact_state.memory)


@needs_mkl
def test_the_mkl_kernel_serves_large_weights_at_many_rows(every_lstm_packs: None) -> None:
    lstm = random_bilm(seed=13).lstm
    many_rows = (torch.randn(mkl.MIN_ROWS, 2, 8), torch.full((mkl.MIN_ROWS,), 2))
    few_rows = (torch.randn(mkl.MIN_ROWS - 1, 2, 8), torch.full((mkl.MIN_ROWS - 1,), 2))
    with fast_paths(planned=False):  # the fixed rule
        assert kernels_taken(lstm, *many_rows) == ["MklKernel"] * 2
        assert kernels_taken(lstm, *few_rows) == ["TorchKernel:in_place"] * 2
    with fast_paths(mkl_packed=False, planned=False):
        assert kernels_taken(lstm, *many_rows) == ["TorchKernel:in_place"] * 2
    with fast_paths(batch_invariant=True, onednn=False):  # batch-invariant mode never takes MKL's GEMM
        assert kernels_taken(lstm, *many_rows) == ["TorchKernel:in_place"] * 2


@needs_mkl
def test_mkl_steps_are_as_accurate_as_bmm_steps(every_lstm_packs: None) -> None:
    lstm = random_bilm(tiny_options(cell_dim=40, projection_dim=12), seed=13).lstm
    generator = torch.Generator().manual_seed(3)
    # 70 rows: steps of 70 and 45 rows (bmm), 32, 20 (padded to 32: packed) and 11 (bmm) rows
    lengths = torch.tensor([9] * 11 + [7] * 9 + [5] * 12 + [4] * 13 + [2] * 25)[torch.randperm(70, generator=generator)]
    inputs = torch.randn(70, 9, 12, generator=generator)
    with fast_paths(kernel="MklKernel"), torch.inference_mode():
        fast, fast_state = lstm(inputs, lengths)
    with torch.inference_mode():
        exact, exact_state = copy.deepcopy(lstm).double()(inputs.double(), lengths)
    assert len(lstm.derived) == 2 * 2 * lstm.n_layers  # (hh, hr) per direction and layer
    with fast_paths(mkl_packed=False), torch.inference_mode():
        expected, expected_state = lstm(inputs, lengths)
    assert_as_accurate(fast, expected, exact)
    assert_as_accurate(fast_state.hidden, expected_state.hidden, exact_state.hidden)
    assert_as_accurate(fast_state.memory, expected_state.memory, exact_state.memory)


def a_layer(cell: int = 64, proj: int = 32, scale: float = 0.2) -> LayerWeights:
    """A layer made by hand, not by an LSTM, float32, widths multiples of 32 as the published models'."""
    generator = torch.Generator().manual_seed(cell + proj)

    def normal(*shape: int) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=generator)

    return LayerWeights(
        index=1,
        weight_ih=normal(2, 4 * cell, proj),
        weight_hh=normal(2, 4 * cell, proj),
        bias=normal(2, 4 * cell),
        weight_hr=normal(2, proj, cell),
        cell_dim=cell,
        projection_dim=proj,
        cell_clip=3.0,
        proj_clip=3.0,
        derived=DerivedTensors(),
    )


def run_steps(kernel: Kernel, inputs: torch.Tensor, rows: int) -> torch.Tensor:
    """Steps of ``rows`` rows over ``(2, steps * rows, input_dim)`` inputs from zero state: every
    step's hidden state, then the final memory, flattened into one vector."""
    layer = kernel.layer
    hidden = inputs.new_zeros(2, rows, layer.projection_dim)
    memory = inputs.new_zeros(2, rows, layer.cell_dim)
    outputs = []
    with torch.no_grad():
        projected = kernel.project(inputs)
        for start in range(0, inputs.shape[1], rows):
            out = inputs.new_empty(2, rows, layer.projection_dim) if kernel.in_place else None
            hidden, memory = kernel.step(projected[:, start : start + rows], hidden, memory, out)
            outputs.append(hidden.flatten().clone())
    return torch.cat([*outputs, memory.flatten()])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_every_kernel_computes_the_plain_step_of_a_layer_made_by_hand(precision: str, every_lstm_packs: None) -> None:
    layer, rows = a_layer(), 16  # 16 rows: MklKernel's packed products run
    inputs = torch.randn(2, 5 * rows, layer.input_dim, generator=torch.Generator().manual_seed(0))
    names = ("weight_ih", "weight_hh", "bias", "weight_hr")
    exact_layer = LayerWeights(**{**vars(layer), **{name: getattr(layer, name).double() for name in names}})
    exact = run_steps(build_kernel(TORCH, exact_layer, rows), inputs.double(), rows)
    plain = run_steps(build_kernel(TORCH, layer, rows), inputs, rows)  # float32, out of place
    with torch.no_grad(), computing_in(precision):  # type: ignore[arg-type]
        usable = candidates(layer.cell_dim, layer.projection_dim, inputs)
        outputs = {}
        for name in usable:
            kernel = build_kernel(name, layer, rows)
            assert kernel.name == name and kernel.in_place and kernel.layer is layer
            outputs[name] = run_steps(kernel, inputs, rows)
    assert (MKL in usable) == mkl.usable(inputs) and (ONEDNN in usable) == onednn.usable(inputs)
    for name, output in outputs.items():
        # within float32 rounding of float64 as the plain step; bf16 products: as the plain bf16 kernel
        if name.endswith(":bf16"):
            assert_as_accurate(output, outputs["TorchKernel:bf16"], exact, dtype=torch.bfloat16)
        else:
            assert_as_accurate(output, plain, exact)


def test_the_fixed_rule() -> None:
    like = torch.zeros(1)
    original, small = (4096, 512), (1024, 128)  # 8.4 M and 0.5 M recurrent weights per direction
    large = MKL if mkl.usable(like) else TORCH_IN_PLACE
    assert kernel_name(*original, mkl.MIN_ROWS, like) == large
    assert kernel_name(*original, mkl.MIN_ROWS - 1, like) == TORCH_IN_PLACE
    assert kernel_name(*small, 64, like) == TORCH_IN_PLACE
    assert kernel_name(*original, 64, like, grad=True) == TORCH
    assert kernel_name(*original, 64, like.double()) == TORCH_IN_PLACE  # float64: no packed products
    with fast_paths(in_place=False):
        assert kernel_name(*original, 64, like) == TORCH
    with fast_paths(mkl_packed=False):
        assert kernel_name(*original, 64, like) == TORCH_IN_PLACE
    with fast_paths(batch_invariant=True):
        assert kernel_name(*original, 64, like) == (ONEDNN if onednn.usable(like) else TORCH_IN_PLACE)
    with computing_in("bf16"):
        bf16 = "OneDnnKernel:bf16" if onednn.bf16_usable(like) else "TorchKernel:bf16"
        assert kernel_name(*small, 64, like) == bf16
        assert kernel_name(*small, 64, like, grad=True) == TORCH
