"""The character encoder (layer 0) against direct computations: every window of every token, token by
token, the highway formula; its exact shortcuts (each distinct token encoded once, windows lying wholly
in the padding computed once per filter) and the token cache give the same vectors."""

from __future__ import annotations

import copy

import pytest
import torch

from flair_elmo_modes.bilm import batch_to_ids
from flair_elmo_modes.bilm.char_encoder import CharacterEncoder, Highway, unique_rows
from tests.bilm.helpers import TOKENS, float32_copy
from tests.helpers import assert_as_accurate, float64_tolerance, random_bilm, tiny_options

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


def test_deduplicated_char_encoding_equals_token_by_token() -> None:
    encoder = random_bilm().char_encoder
    ids = batch_to_ids([["a", "b", "a", "a"], ["b", "", "a"], ["a"]])
    with torch.no_grad():
        fast = encoder(ids)
        slow = encoder.encode_distinct(ids.view(-1, 50)).view(3, 4, -1)
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)


def highway_formula(highway: Highway, x: torch.Tensor) -> torch.Tensor:
    """AllenNLP's highway written out: ``[transform; gate] = W x + b``, then
    ``sigmoid(gate) * x + (1 - sigmoid(gate)) * relu(transform)``, layer after layer."""
    dim = x.shape[-1]
    for layer in highway.layers:
        pre = x @ layer.weight.T + layer.bias  # (n, 2 * dim)
        transform, gate = pre[:, :dim], torch.sigmoid(pre[:, dim:])
        x = gate * x + (1 - gate) * torch.relu(transform)
    return x


def direct_encoding(encoder: CharacterEncoder, char_ids: torch.Tensor) -> torch.Tensor:
    """``(batch, timesteps, max_chars)`` ids -> ``(batch, timesteps, projection_dim)`` from the weights
    alone: embedding rows, every window of every filter as a sum of products, the maximum over all
    windows, the activation, :func:`highway_formula`, the projection."""
    embedded = encoder.char_embedding.weight[char_ids.reshape(-1, char_ids.shape[-1])]  # (n, chars, dim)
    pooled = []
    for conv in encoder.convolutions:
        width = conv.weight.shape[-1]
        windows = embedded.unfold(1, width, 1)  # (n, chars - width + 1, char_dim, width)
        values = torch.einsum("nwck,fck->nwf", windows, conv.weight) + conv.bias
        pooled.append(values.amax(dim=1))
    activation = torch.tanh if encoder.options.activation == "tanh" else torch.relu
    features = highway_formula(encoder.highway, activation(torch.cat(pooled, dim=-1)))
    projected = features @ encoder.projection.weight.T + encoder.projection.bias
    return projected.view(*char_ids.shape[:2], -1)


@pytest.mark.parametrize("name", list(ENCODER_OPTIONS))
def test_the_encoder_is_its_direct_computation(name: str) -> None:
    options = ENCODER_OPTIONS[name]
    encoder = random_bilm(options, seed=21).char_encoder.double()
    ids = batch_to_ids(TOKENS)  # padding inside tokens, empty tokens, a row of batch padding only
    with torch.no_grad():
        encoded = encoder(ids)
        expected = direct_encoding(encoder, ids)
        float32 = direct_encoding(float32_copy(encoder), ids)
    assert encoded.shape == (len(TOKENS), max(map(len, TOKENS)), options.projection_dim)
    # other summation orders (one matrix multiply for all filters): float64 rounding (float64_tolerance)
    torch.testing.assert_close(encoded, expected, rtol=0, atol=float64_tolerance(float32, expected))


@pytest.mark.parametrize("n_layers", [1, 3])
def test_the_highway_is_its_formula(n_layers: int) -> None:
    generator = torch.Generator().manual_seed(n_layers)
    highway = Highway(6, n_layers).double()
    with torch.no_grad():
        for parameter in highway.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    x = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        got, expected = highway(x), highway_formula(highway, x)
        float32 = highway_formula(float32_copy(highway), x.float())
    torch.testing.assert_close(got, expected, rtol=0, atol=float64_tolerance(float32, expected))
