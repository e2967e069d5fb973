"""The LSTM stack (layers 1..L) against a reference written here: one row and one direction at a
time, one ``(1, dim)`` step at a time. The stack packs rows, runs both directions per kernel call,
computes input projections in blocks and steps in place without autograd: none of it may change more
than rounding."""

from __future__ import annotations

import copy

import pytest
import torch

from flair_elmo_modes.bilm.fast.fast_paths import fast_paths
from flair_elmo_modes.bilm.lstm import BidirectionalLstm, LstmState, PackedLayout
from tests.bilm.helpers import float32_copy
from tests.helpers import CONTRACTING_SCALE, assert_as_accurate, float64_tolerance, random_bilm, tiny_options


def reference_lstm(
    lstm: BidirectionalLstm, inputs: torch.Tensor, lengths: list[int], state: LstmState
) -> tuple[torch.Tensor, LstmState]:
    """One row and one direction at a time, one ``(1, dim)`` step at a time."""
    batch, timesteps, _ = inputs.shape
    cell = lstm.cell_dim
    layers = inputs.new_zeros(lstm.n_layers, batch, timesteps, 2 * lstm.projection_dim)
    final_hidden, final_memory = state.hidden.clone(), state.memory.clone()
    for b, length in enumerate(lengths):
        sequences = [inputs[b, :length], inputs[b, :length].flip(0)]  # [forward, backward]
        for k in range(lstm.n_layers):
            outputs = []
            for d in (0, 1):
                w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}")[d], getattr(lstm, f"weight_hh_l{k}")[d]
                w_hr, bias = getattr(lstm, f"weight_hr_l{k}")[d], getattr(lstm, f"bias_l{k}")[d]
                h, c = state.hidden[k, d, b], state.memory[k, d, b]
                steps = []
                for x in sequences[d]:
                    gates = w_ih @ x + bias + w_hh @ h
                    i, f = torch.sigmoid(gates[:cell]), torch.sigmoid(gates[cell : 2 * cell])
                    g, o = torch.tanh(gates[2 * cell : 3 * cell]), torch.sigmoid(gates[3 * cell :])
                    c = i * g + f * c
                    if lstm.cell_clip:
                        c = c.clamp(-lstm.cell_clip, lstm.cell_clip)
                    h = w_hr @ (o * torch.tanh(c))
                    if lstm.proj_clip:
                        h = h.clamp(-lstm.proj_clip, lstm.proj_clip)
                    steps.append(h)
                final_hidden[k, d, b], final_memory[k, d, b] = h, c
                out = torch.stack(steps) if steps else inputs.new_zeros(0, lstm.projection_dim)
                if lstm.use_skip_connections and k > 0:
                    out = out + sequences[d]
                outputs.append(out)
            sequences = outputs
            layers[k, b, :length] = torch.cat([outputs[0], outputs[1].flip(0)], dim=-1)
    return layers, LstmState(final_hidden, final_memory)


LSTM_OPTIONS = {
    "tiny": tiny_options(),
    "three_layers": tiny_options(n_layers=3),
    "no_clip_no_skip": tiny_options(cell_clip=0.0, proj_clip=0.0, use_skip_connections=False),
}
LENGTHS = [[5, 1, 0, 7, 7, 3], [1], [0, 0], [4, 4, 4]]


def random_state(lstm: BidirectionalLstm, batch: int, generator: torch.Generator) -> LstmState:
    shape = (lstm.n_layers, 2, batch)
    return LstmState(
        torch.randn(*shape, lstm.projection_dim, generator=generator, dtype=torch.float64),
        torch.randn(*shape, lstm.cell_dim, generator=generator, dtype=torch.float64),
    )


@pytest.mark.parametrize("name", list(LSTM_OPTIONS))
@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
@pytest.mark.parametrize("mode", ["inference_mode", "no_grad", "autograd"])
def test_lstm_equals_one_row_at_a_time(name: str, lengths: list[int], mode: str) -> None:
    lstm = random_bilm(LSTM_OPTIONS[name], seed=6).lstm.double()
    generator = torch.Generator().manual_seed(len(lengths))
    inputs = torch.randn(len(lengths), 8, 8, generator=generator, dtype=torch.float64)
    state = random_state(lstm, len(lengths), generator)
    with torch.no_grad():
        expected, expected_state = reference_lstm(lstm, inputs, lengths, state)
        zero_expected, _ = reference_lstm(lstm, inputs, lengths, lstm.initial_state(len(lengths), inputs))
        # the reference in float32 measures how much these steps amplify rounding (float64_tolerance)
        float32_state = LstmState(state.hidden.float(), state.memory.float())
        float32_lstm, float32_inputs = float32_copy(lstm), inputs.float()
        float32, float32_final = reference_lstm(float32_lstm, float32_inputs, lengths, float32_state)
        zero_start_state = float32_lstm.initial_state(len(lengths), float32_inputs)
        float32_zero_start, _ = reference_lstm(float32_lstm, float32_inputs, lengths, zero_start_state)
    context = {"inference_mode": torch.inference_mode(), "no_grad": torch.no_grad()}.get(mode, torch.enable_grad())
    with context:
        layers, final = lstm(inputs, torch.tensor(lengths), state)
        zero_start, _ = lstm(inputs, torch.tensor(lengths))
    assert layers.requires_grad == (mode == "autograd" and any(lengths))
    # packed rows, both directions and blocks per product: other summation orders, float64 rounding
    for got, want, float32_want in (
        (layers, expected, float32),
        (final.hidden, expected_state.hidden, float32_final.hidden),
        (final.memory, expected_state.memory, float32_final.memory),
        (zero_start, zero_expected, float32_zero_start),
    ):
        torch.testing.assert_close(got, want, rtol=0, atol=float64_tolerance(float32_want, want))


@pytest.mark.parametrize("rows", [1, 3, 512])
def test_projection_blocks_do_not_change_the_result(rows: int) -> None:
    lstm = random_bilm(seed=9).lstm.double()
    lstm.input_projection_rows = rows
    inputs = torch.randn(4, 10, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lengths = [10, 3, 7, 1]
    with torch.no_grad():
        layers, _ = lstm(inputs, torch.tensor(lengths))
        expected, _ = reference_lstm(lstm, inputs, lengths, lstm.initial_state(4, inputs))
        float32_lstm, float32_inputs = float32_copy(lstm), inputs.float()
        zero_start = float32_lstm.initial_state(4, float32_inputs)
        float32, _ = reference_lstm(float32_lstm, float32_inputs, lengths, zero_start)
    # blocks of other sizes sum in another order: float64 rounding (float64_tolerance)
    torch.testing.assert_close(layers, expected, rtol=0, atol=float64_tolerance(float32, expected))


def test_lstm_gradients_equal_the_reference_gradients() -> None:
    generator = torch.Generator().manual_seed(2)
    inputs = torch.randn(3, 6, 8, generator=generator, dtype=torch.float64)
    lengths = [6, 2, 0]
    weights = torch.randn(2, 3, 6, 16, generator=generator, dtype=torch.float64)
    grads = []
    # the last run, the reference in float32, measures how much the gradients amplify rounding
    for run, dtype in (("lstm", torch.float64), ("reference", torch.float64), ("reference", torch.float32)):
        lstm = random_bilm(seed=10).lstm.to(dtype)
        x = inputs.clone().to(dtype).requires_grad_()
        state = lstm.initial_state(3, x)
        layers, _ = lstm(x, torch.tensor(lengths)) if run == "lstm" else reference_lstm(lstm, x, lengths, state)
        (layers * weights.to(dtype)).sum().backward()
        grads.append({"inputs": x.grad, **{name: p.grad for name, p in lstm.named_parameters()}})
    for name in grads[0]:
        # other summation orders: float64 rounding (float64_tolerance)
        atol = float64_tolerance(grads[2][name], grads[1][name])
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=atol, msg=name)


def test_packed_layout() -> None:
    lengths = torch.tensor([2, 0, 3])
    sorted_lengths, order = lengths.sort(descending=True)  # [3, 2, 0], order [2, 0, 1]
    layout = PackedLayout.build(sorted_lengths, order, timesteps=3)
    assert layout.batch_sizes == [2, 2, 1] and layout.offsets == [0, 2, 4, 5]
    # flattened (batch * timesteps) positions: row 2 starts at 6, row 0 at 0
    assert layout.forward_index.tolist() == [6, 0, 7, 1, 8]
    assert layout.backward_index.tolist() == [8, 1, 7, 0, 6]
    assert layout.last_rows.tolist() == [4, 3]
    assert layout.blocks == [(0, 3)]
    assert PackedLayout.build(sorted_lengths, order, timesteps=3, block_rows=4).blocks == [(0, 2), (2, 3)]
    assert PackedLayout.build(sorted_lengths, order, timesteps=3, block_rows=1).blocks == [(0, 1), (1, 2), (2, 3)]
    empty = PackedLayout.build(torch.zeros(2, dtype=torch.long), torch.arange(2), timesteps=4)
    assert empty.batch_sizes == [] and empty.offsets == [0] and empty.blocks == []


def test_the_plain_float32_path_is_as_accurate_as_the_reference() -> None:
    lstm = random_bilm(tiny_options(n_layers=3), seed=7, scale=CONTRACTING_SCALE).lstm
    generator = torch.Generator().manual_seed(7)
    lengths = [9, 4, 0, 9, 1]
    inputs = torch.randn(len(lengths), 9, 8, generator=generator)
    exact_lstm, exact_inputs = copy.deepcopy(lstm).double(), inputs.double()
    with torch.no_grad():
        zeros = exact_lstm.initial_state(len(lengths), exact_inputs)
        exact, exact_state = reference_lstm(exact_lstm, exact_inputs, lengths, zeros)
        reference, reference_state = reference_lstm(lstm, inputs, lengths, lstm.initial_state(len(lengths), inputs))
        with fast_paths(enabled=False):
            plain, plain_state = lstm(inputs, torch.tensor(lengths))
    # both float32: each within float32 rounding of float64 (the stack sums in other orders)
    assert_as_accurate(plain, reference, exact)
    assert_as_accurate(plain_state.hidden, reference_state.hidden, exact_state.hidden)
    assert_as_accurate(plain_state.memory, reference_state.memory, exact_state.memory)


def test_a_layer_is_the_lstms_own_parameters() -> None:
    # kernels key their weight copies on these tensors: copies would never see a weight change
    lstm = random_bilm(tiny_options(n_layers=3, cell_clip=2.0, proj_clip=0.0)).lstm
    for k in range(3):
        layer = lstm.layer(k)
        assert layer.index == k and layer.parameter_name("weight_hh") == f"weight_hh_l{k}"
        for name in ("weight_ih", "weight_hh", "bias", "weight_hr"):
            assert getattr(layer, name) is getattr(lstm, f"{name}_l{k}")
        assert layer.parameters() == [layer.weight_ih, layer.weight_hh, layer.bias, layer.weight_hr]
        assert (layer.input_dim, layer.cell_dim, layer.projection_dim) == (8, 24, 8)
        assert (layer.cell_clip, layer.proj_clip) == (2.0, 0.0)
        assert layer.derived is lstm.derived
