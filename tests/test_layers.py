import copy

import pytest
import torch

from flair_elmo_modes.layers import ScalarMix, parse_mode, select_layers
from tests.helpers import FLOAT32_EPS, assert_as_accurate, assert_within


@pytest.fixture
def layers() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 2, 4, 5)  # (num_layers, batch, timesteps, dim)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("all", lambda h: torch.cat([h[0], h[1], h[2]], dim=-1)),
        ("top", lambda h: h[2]),
        ("bottom", lambda h: h[0]),
        ("average", lambda h: (h[0] + h[1] + h[2]) / 3),
        (1, lambda h: h[1]),
        (-1, lambda h: h[2]),
        ([2, 0], lambda h: torch.cat([h[2], h[0]], dim=-1)),
        ("0,2", lambda h: torch.cat([h[0], h[2]], dim=-1)),
        ((-3, -2), lambda h: torch.cat([h[0], h[1]], dim=-1)),
    ],
)
def test_fixed_modes(layers: torch.Tensor, mode, expected) -> None:
    parsed = parse_mode(mode, 3)
    out = select_layers(layers, parsed)
    if parsed.kind == "average":
        # mean() and (h0 + h1 + h2) / 3 may round differently: two sums of magnitude <= S = |h0| +
        # |h1| + |h2|, then a division (or a product with fl(1/3)), put each within 4/3 half-ulps of S
        # of the exact mean; so they differ by less than 2 * FLOAT32_EPS * S
        assert_within(out, expected(layers), 2 * FLOAT32_EPS * layers.abs().sum(dim=0))
    else:
        torch.testing.assert_close(out, expected(layers), rtol=0, atol=0)  # copies of layers: bitwise
    assert out.shape[-1] == parsed.embedding_length(5)


def test_canonical_spec() -> None:
    assert parse_mode("TOP", 3).spec == "top"
    assert parse_mode(-1, 3).spec == "2"
    assert parse_mode([0, -1], 3).spec == "0,2"
    assert parse_mode("mix", 3).embedding_length(7) == 7


@pytest.mark.parametrize("mode", ["first", 3, -4, [0, 5], [], "1,x", True, 1.5, None])
def test_invalid_modes_list_the_choices(mode) -> None:
    with pytest.raises(ValueError) as info:
        parse_mode(mode, 3)
    assert "'all'" in str(info.value) and "this model has 3 layers" in str(info.value)


def test_mix_starts_as_average(layers: torch.Tensor) -> None:
    mix = ScalarMix(3)
    # fl(1/3) * each layer, summed (fl(1/3), the products and two sums: 4/3 half-ulps of S = |h0| +
    # |h1| + |h2|) against the mean (as in test_fixed_modes, 4/3): apart by less than 2 * FLOAT32_EPS * S
    assert_within(mix(layers), layers.mean(dim=0), 2 * FLOAT32_EPS * layers.abs().sum(dim=0))
    weights, gamma = mix.normalized_weights()
    # softmax of zeros: exp(0) = 1 and 1 + 1 + 1 = 3 exactly, then 1 / 3 rounded once (half an ulp)
    assert weights == pytest.approx([1 / 3] * 3, rel=FLOAT32_EPS / 2, abs=0) and gamma == 1.0


def test_mix_with_initial_weights(layers: torch.Tensor) -> None:
    mix = ScalarMix(3, initial_weights=[0.0, 1.0, 2.0])
    s = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=0)  # the mix's own weights, bitwise
    # three products and two sums in either: each within 3 half-ulps of T = sum_j s_j |h_j| of the
    # exact value, so they differ by at most 3 * FLOAT32_EPS * T
    bound = 3 * FLOAT32_EPS * torch.einsum("l,l...->...", s, layers.abs())
    assert_within(mix(layers), s[0] * layers[0] + s[1] * layers[1] + s[2] * layers[2], bound)


def test_mix_is_trainable(layers: torch.Tensor) -> None:
    mix = ScalarMix(3)
    optimizer = torch.optim.SGD(mix.parameters(), lr=0.5)
    loss = (mix(layers) - layers[2]).pow(2).mean()
    loss.backward()
    optimizer.step()
    weights, gamma = mix.normalized_weights()
    assert weights[2] > 1 / 3 and gamma != 1.0


def test_mix_layer_norm_is_per_sentence(layers: torch.Tensor) -> None:
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    mix = ScalarMix(3, layer_norm=True)
    together = mix(layers, mask)
    alone = mix(layers[:, 1:, :2], mask[1:, :2])
    # other shapes, other summation order in the statistics: float32 rounding, against float64
    exact = copy.deepcopy(mix).double()(layers[:, 1:, :2].double(), mask[1:, :2])
    assert_as_accurate(together[1, :2], alone[0], exact[0])
    # each normalised layer has zero mean and unit variance over the sentence's real tokens
    first = layers[0, 0, :3]
    normed = (first - first.mean()) / first.std(unbiased=False)
    exact_normed = (first.double() - first.double().mean()) / first.double().std(unbiased=False)
    # softmax([100, 0, 0]) is (1, 4e-44, 4e-44): layer 0, normalised another way: float32 rounding
    only_first = ScalarMix(3, initial_weights=[100.0, 0.0, 0.0], layer_norm=True)(layers, mask)[0, :3]
    assert_as_accurate(only_first, normed, exact_normed)


def test_mix_checks_counts(layers: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="got 2 values for 3 layers"):
        ScalarMix(3, initial_weights=[0.0, 1.0])
    with pytest.raises(ValueError, match="built for 4 layers, got 3"):
        ScalarMix(4)(layers)


def test_mix_layer_norm_over_the_batch_is_allennlps(layers: torch.Tensor) -> None:
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    mix = ScalarMix(3, initial_weights=[100.0, 0.0, 0.0], layer_norm=True, norm_over="batch")
    # layer 0 normalised as AllenNLP's ScalarMix does: statistics of the real positions of the
    # whole batch (padding included in the output, not in the statistics), in float64
    real = layers[0][mask].double()
    exact = (layers[0].double() - real.mean()) / real.std(unbiased=False)
    plain = (layers[0] - layers[0][mask].mean()) / layers[0][mask].std(unbiased=False)
    assert_as_accurate(mix(layers, mask), plain, exact)
    # so a sentence's vectors depend on the other sentences of its batch
    alone = mix(layers[:, 1:], mask[1:])
    assert not torch.allclose(alone[0, :2], mix(layers, mask)[1, :2])


def test_mix_norm_over_is_checked() -> None:
    with pytest.raises(ValueError, match="norm_over must be one of 'sentence', 'batch', got 'corpus'"):
        ScalarMix(3, norm_over="corpus")
