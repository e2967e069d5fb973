"""The biLM's exact shortcuts give what the straightforward computation gives.

- ``CharacterEncoder``: each distinct token is encoded once, and convolution windows lying wholly in
  the padding after a word are computed once per filter; checked against a full convolution of
  every token.
- ``BidirectionalLstm``: packed sequences, both directions per kernel call, input projections in
  blocks, in-place steps without autograd; checked against a plain loop over one sentence and one
  direction at a time, with and without autograd.
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from flair_elmo_modes.bilm import batch_to_ids, kernel_plan, kernels, mkl, onednn
from flair_elmo_modes.bilm.char_encoder import CharacterEncoder, unique_rows
from flair_elmo_modes.bilm.fast_paths import fast_paths
from flair_elmo_modes.bilm.lstm import BidirectionalLstm, LstmState, PackedLayout
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.precision import Precision, computing_in
from tests.helpers import assert_as_accurate, float64_tolerance, random_bilm, tiny_options

TOKENS = [
    ["a", "a", "", "I", "a"],  # repeated tokens, an empty token, length-1 tokens
    ["x" * 47, "y" * 48, "z" * 49, "w" * 80, "é" * 24, "g" * 47 + "😀"],  # around the 48-byte cut
    ["<S>", "</S>", "Zürich", "🙂", " ", "a" * 6, "b" * 7, "c" * 10, "d" * 11, "e" * 16, "f" * 17],
    ["one"],
    [],  # a row of batch padding only
]

ENCODER_OPTIONS = {
    "tiny": tiny_options(),
    "relu": tiny_options(activation="relu", n_highway=0),
    # widths up to the whole token: some filters have no window wholly in the padding
    "wide_filters": tiny_options(filters=((1, 3), (7, 5), (26, 2), (49, 2), (50, 4))),
}


def full_convolution(encoder: CharacterEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """Every window of every token: ``(n, max_chars)`` -> ``(n, n_filters)``, before the activation."""
    embedded = encoder.char_embedding(char_ids).transpose(1, 2)  # (n, char_dim, max_chars)
    return torch.cat([conv(embedded).max(dim=-1).values for conv in encoder.convolutions], dim=-1)


def token_by_token(encoder: CharacterEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """``(batch, timesteps, max_chars)`` -> ``(batch, timesteps, projection_dim)``: every position, every window."""
    features = encoder.activation(full_convolution(encoder, char_ids.reshape(-1, char_ids.shape[-1])))
    return encoder.projection(encoder.highway(features)).view(*char_ids.shape[:2], -1)


def odd_ids() -> torch.Tensor:
    """Ids no tokenizer makes: all padding, padding inside a word, a missing end-of-word marker."""
    ids = batch_to_ids([["abc", "defgh"]])[0].clone()
    all_padding = torch.full((50,), 261)
    inner_padding = ids[1].clone()
    inner_padding[2] = 261
    no_end = ids[0].clone()
    no_end[4:] = 100
    return torch.stack([all_padding, inner_padding, no_end, torch.zeros(50, dtype=torch.long)])


def float32_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A float32 copy of a float64 module (weights that were float32 values: cast exactly)."""
    return copy.deepcopy(module).float()


@pytest.mark.parametrize("name", list(ENCODER_OPTIONS))
def test_trimmed_convolution_equals_the_full_convolution(name: str) -> None:
    encoder = random_bilm(ENCODER_OPTIONS[name], seed=3).char_encoder.double()
    ids = torch.cat([batch_to_ids(TOKENS).view(-1, 50), odd_ids()])
    with torch.no_grad():
        expected = full_convolution(encoder, ids)
        # other convolution shapes, other summation order: float64 rounding, bounded through the
        # full convolution's float32 error (float64_tolerance)
        atol = float64_tolerance(full_convolution(float32_copy(encoder), ids), expected)
        torch.testing.assert_close(encoder.convolve(ids), expected, rtol=0, atol=atol)


def test_trimmed_convolution_in_float32() -> None:
    encoder = random_bilm(seed=3).char_encoder
    ids = batch_to_ids(TOKENS).view(-1, 50)
    with torch.no_grad():
        # two float32 algorithms: each within float32 rounding of the float64 convolution
        exact = full_convolution(copy.deepcopy(encoder).double(), ids)
        assert_as_accurate(encoder.convolve(ids), full_convolution(encoder, ids), exact)


def test_convolving_no_token_gives_an_empty_result() -> None:
    encoder = random_bilm().char_encoder
    assert encoder.convolve(torch.zeros(0, 50, dtype=torch.long)).shape == (0, tiny_options().n_filters)


@pytest.mark.parametrize("name", list(ENCODER_OPTIONS))
def test_deduplicated_encoding_equals_token_by_token(name: str) -> None:
    encoder = random_bilm(ENCODER_OPTIONS[name], seed=4).char_encoder.double()
    ids = batch_to_ids(TOKENS)
    with torch.no_grad():
        expected = token_by_token(encoder, ids)
        # other batches of tokens: float64 rounding (float64_tolerance, from float32 token by token)
        atol = float64_tolerance(token_by_token(float32_copy(encoder), ids), expected)
        torch.testing.assert_close(encoder(ids), expected, rtol=0, atol=atol)


def test_a_token_gets_the_same_vector_in_any_batch() -> None:
    encoder = random_bilm().char_encoder.double()
    with torch.no_grad():
        alone = encoder(batch_to_ids([["Zürich"]]))[0, 0]
        among = encoder(batch_to_ids(TOKENS))[2, 2]
        float32_alone = float32_copy(encoder)(batch_to_ids([["Zürich"]]))[0, 0]
    # another batch, other kernel blocking: float64 rounding (float64_tolerance)
    torch.testing.assert_close(among, alone, rtol=0, atol=float64_tolerance(float32_alone, alone))


def test_trimmed_convolution_gradients_equal_the_full_convolution_gradients() -> None:
    ids = torch.cat([batch_to_ids(TOKENS).view(-1, 50), odd_ids()])
    grads = []
    # the last run, the full convolution in float32, measures how much the gradients amplify rounding
    for convolve, dtype in (
        (CharacterEncoder.convolve, torch.float64),
        (full_convolution, torch.float64),
        (full_convolution, torch.float32),
    ):
        encoder = random_bilm(ENCODER_OPTIONS["wide_filters"], seed=5).char_encoder.to(dtype)
        features = convolve(encoder, ids)
        (features * torch.linspace(-1, 1, features.shape[-1], dtype=dtype)).sum().backward()
        grads.append({name: p.grad for name, p in encoder.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() == grads[2].keys() and "char_embedding.weight" in grads[0]
    for name in grads[0]:
        # other windows summed in another order: float64 rounding (float64_tolerance)
        atol = float64_tolerance(grads[2][name], grads[1][name])
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize(
    "groups", [(), (1,), (3, 4, 5, 6, 7, 8), (8, 12, 18, 28), (40, 45, 49), (46,)], ids=lambda g: str(g) or "one group"
)
def test_any_grouping_by_real_slots_gives_the_full_convolution(groups: tuple[int, ...]) -> None:
    # (40, 45, 49): windows of the widest filters run past the last slot and are left out;
    # (46,): 46 + width 5 - 1 = 50, so the widest filter has no window wholly in the padding
    # for a token of 46 real slots (44 characters).
    encoder = random_bilm(ENCODER_OPTIONS["tiny"], seed=12).char_encoder.double()
    encoder.real_slot_groups = groups
    ids = torch.cat([batch_to_ids([*TOKENS, ["h" * 44, "i" * 43]]).view(-1, 50), odd_ids()])
    with torch.no_grad():
        expected = full_convolution(encoder, ids)
        atol = float64_tolerance(full_convolution(float32_copy(encoder), ids), expected)  # as above
        torch.testing.assert_close(encoder.convolve(ids), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("high", [2, 262, 2**20, 2**62])
def test_unique_rows_equals_torch_unique(high: int) -> None:
    generator = torch.Generator().manual_seed(high % 1000)
    rows = torch.randint(0, high, (40, 50), generator=generator)
    rows = torch.cat([rows, rows[::3], rows[:1], torch.zeros(2, 50, dtype=torch.long)])  # repeats
    distinct, inverse = unique_rows(rows)
    expected, expected_inverse = torch.unique(rows, dim=0, return_inverse=True)
    torch.testing.assert_close(distinct, expected, rtol=0, atol=0)
    torch.testing.assert_close(inverse, expected_inverse, rtol=0, atol=0)


@pytest.mark.parametrize(
    "rows",
    [
        torch.zeros(0, 50, dtype=torch.long),
        torch.tensor([[-1, 2], [3, 4], [-1, 2]]),
        torch.ones(3, 1, dtype=torch.long),
    ],
    ids=["empty", "negative", "one column"],
)
def test_unique_rows_edge_cases(rows: torch.Tensor) -> None:
    distinct, inverse = unique_rows(rows)
    torch.testing.assert_close(distinct[inverse], rows, rtol=0, atol=0)
    assert len(distinct) == len({tuple(row) for row in rows.tolist()}) and inverse.shape == (len(rows),)


def test_token_cache_gives_the_uncached_vectors() -> None:
    encoder = random_bilm(seed=17).char_encoder.double()
    ids = batch_to_ids(TOKENS)
    with torch.no_grad():
        expected = encoder(ids)
        float32 = float32_copy(encoder)(ids)
    vocabulary = batch_to_ids([["a"], ["Zürich"], ["x" * 47], [""], ["not in the batch"]])[:, 0]
    encoder.cache_tokens(vocabulary)
    assert encoder.token_cache is not None and len(encoder.token_cache) == 5
    with torch.no_grad():
        cached = encoder(ids)
    # the cache encoded its tokens in another batch: float64 rounding (float64_tolerance)
    torch.testing.assert_close(cached, expected, rtol=0, atol=float64_tolerance(float32, expected))
    assert encoder.token_cache.hits == 4 and encoder.token_cache.misses > 0


def test_token_cache_follows_weight_changes_and_is_skipped_by_autograd() -> None:
    encoder = random_bilm(seed=18).char_encoder.double()
    ids = batch_to_ids([["a", "b", "a"]])
    encoder.cache_tokens(batch_to_ids([["a"], ["b"]])[:, 0])
    with torch.no_grad():
        before = encoder(ids)
        encoder.projection.bias.add_(1.0)
        after = encoder(ids)
        float32_after = float32_copy(encoder)(ids)
    # W x + (b + 1) against (W x + b) + 1: other roundings, float64 rounding (float64_tolerance)
    torch.testing.assert_close(after, before + 1.0, rtol=0, atol=float64_tolerance(float32_after, after))
    encoder(ids).sum().backward()  # autograd: encoded as usual, so the weights get gradients
    assert encoder.convolutions[0].weight.grad is not None
    encoder.cache_tokens(None)
    assert encoder.token_cache is None
    with pytest.raises(ValueError, match="expects \\(n_tokens, width\\) ids"):
        encoder.cache_tokens(ids)


# --- LSTM ------------------------------------------------------------------------------------------


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


def test_biLM_inference_is_as_accurate_as_autograd() -> None:
    bilm = random_bilm(seed=11)
    ids = batch_to_ids(TOKENS)
    with torch.inference_mode():
        fast = bilm(ids).layers
        exact = copy.deepcopy(bilm).double()(ids).layers
    slow = bilm(ids).layers
    assert slow.requires_grad
    # This random model amplifies rounding (float32 vs float64: about 1e-5), so both float32
    # paths are measured against float64.
    assert_as_accurate(fast, slow, exact)


needs_onednn = pytest.mark.skipif(
    not onednn.usable(torch.zeros(1)), reason="oneDNN's pre-packed linear is not in this torch build"
)


def run_without_onednn(lstm: BidirectionalLstm, *args: torch.Tensor) -> tuple[torch.Tensor, LstmState]:
    with fast_paths(onednn=False), torch.inference_mode():
        return lstm(*args)


def kernels_taken(lstm: BidirectionalLstm, *args: torch.Tensor) -> list[str]:
    """The kernel class of each layer in one inference forward."""
    taken: list[str] = []
    original = kernel_plan.choose_kernel

    def recording(*a: object, **k: object) -> kernels.Kernel:
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
    with pytest.raises(TypeError, match="unknown fast path"):
        with fast_paths(onednn_everywhere=True):
            pass


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


needs_mkl = pytest.mark.skipif(not mkl.usable(torch.zeros(1)), reason="MKL's packed GEMM is not in this torch build")


@pytest.fixture
def every_lstm_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the small test LSTMs take MklKernel, which is meant for large recurrent weights."""
    monkeypatch.setattr(mkl, "MIN_RECURRENT_WEIGHT", 0)


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


def _change_weights(how: str, bilm: ElmoBiLm) -> None:
    """Change the biLM's weights in one of the ways users and libraries do."""
    lstm = bilm.lstm
    if how == "in place":
        with torch.no_grad():
            lstm.weight_hh_l1.mul_(1.5)
            lstm.weight_hr_l0.add_(0.1)
    elif how == ".data":  # bypasses autograd; PyTorch gives .data a version counter of its own
        lstm.weight_hh_l1.data.mul_(0.5)
        bilm.char_encoder.projection.bias.data.add_(0.5)
    elif how == "load_state_dict":
        bilm.load_state_dict(random_bilm(seed=15).state_dict())
    elif how == "load_state_dict(assign=True)":  # new Parameter objects
        bilm.load_state_dict(random_bilm(seed=15).state_dict(), assign=True)
    elif how == "optimizer step":
        parameters = list(bilm.parameters())
        for p in parameters:
            p.grad = torch.ones_like(p)
        torch.optim.SGD(parameters, lr=0.01).step()
    else:
        raise AssertionError(how)


@needs_onednn
@needs_mkl
@pytest.mark.parametrize(
    ("packed", "kernel", "precision", "copies"),
    [
        ("oneDNN", "OneDnnKernel", "fp32", 3),  # (ih, hh, hr) per direction and layer
        ("MKL", "MklKernel", "fp32", 2),  # (hh, hr)
        pytest.param(
            "oneDNN bf16",
            "OneDnnKernel:bf16",
            "bf16",
            3,
            marks=pytest.mark.skipif(not onednn.bf16_usable(torch.zeros(1)), reason="oneDNN packs no bf16 here"),
        ),
    ],
)
@pytest.mark.parametrize(
    "how", ["in place", ".data", "load_state_dict", "load_state_dict(assign=True)", "optimizer step"]
)
def test_every_cache_follows_every_weight_change(
    how: str, packed: str, kernel: str, precision: Precision, copies: int, every_lstm_packs: None
) -> None:
    bilm = random_bilm(seed=14)
    bilm.char_encoder.cache_tokens(batch_to_ids([[t] for t in {t for s in TOKENS for t in s}])[:, 0])
    ids = batch_to_ids(TOKENS * 3)  # 15 rows: MklKernel's packed products run
    # every packed copy of the kernel and the token cache in use
    with fast_paths(kernel=kernel), computing_in(precision), torch.no_grad():
        before = bilm(ids).layers
        assert len(bilm.lstm.derived) == copies * 2 * bilm.lstm.n_layers
        _change_weights(how, bilm)
        after = bilm(ids).layers
        fresh = copy.deepcopy(bilm)  # a copy computes everything anew
        fresh.char_encoder.cache_tokens(None)
        expected = fresh(ids).layers
    # every change moves the layers far beyond float32 rounding (~1e-6 of these values): a stale
    # packed copy or cached token would leave them as they were
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, expected, rtol=0, atol=0)


@needs_onednn
def test_caches_are_dropped_when_the_biLM_is_cast() -> None:
    bilm = random_bilm(seed=14)
    bilm.char_encoder.cache_tokens(batch_to_ids([["a"], ["b"]])[:, 0])
    ids = batch_to_ids([["a", "b", "c"]])
    with fast_paths(batch_invariant=True), torch.no_grad():
        bilm(ids)
        assert len(bilm.lstm.derived) > 0 and len(bilm.char_encoder.derived) > 0
        bilm.double()  # the packed float32 copies must not serve float64 weights
        assert len(bilm.lstm.derived) == 0 and len(bilm.char_encoder.derived) == 0
        assert len(bilm.char_encoder.token_cache._derived) == 0
        layers = bilm(ids).layers
    assert layers.dtype == torch.float64
    plain = copy.deepcopy(bilm)
    plain.char_encoder.cache_tokens(None)
    with fast_paths(enabled=False), torch.no_grad():
        expected, float32 = plain(ids).layers, float32_copy(plain)(ids).layers
    # in place and cached vs the plain path: float64 rounding (float64_tolerance)
    torch.testing.assert_close(layers, expected, rtol=0, atol=float64_tolerance(float32, expected))


def test_a_used_biLM_still_copies_and_pickles() -> None:
    bilm = random_bilm(seed=16)
    ids = batch_to_ids(TOKENS)
    with torch.inference_mode():
        expected = bilm(ids).layers
    for clone in (copy.deepcopy(bilm), pickle.loads(pickle.dumps(bilm))):
        with torch.inference_mode():
            torch.testing.assert_close(clone(ids).layers, expected, rtol=0, atol=0)


@needs_onednn
def test_clear_caches_serves_writes_that_bypass_pytorch() -> None:
    bilm = random_bilm(seed=17)
    bilm.char_encoder.cache_tokens(batch_to_ids([["a"], ["b"]])[:, 0])
    ids = batch_to_ids([["a", "b", "c"]])
    with fast_paths(batch_invariant=True), torch.no_grad():
        bilm(ids)
        bilm.lstm.weight_hh_l1.detach().numpy()[:] *= 0.25  # no version bump: documented as unseen
        bilm.char_encoder.projection.bias.detach().numpy()[:] += 0.5
        bilm.clear_caches()
        after = bilm(ids).layers
        fresh = copy.deepcopy(bilm)
        fresh.char_encoder.cache_tokens(None)
        torch.testing.assert_close(after, fresh(ids).layers, rtol=0, atol=0)
