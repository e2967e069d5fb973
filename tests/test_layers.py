import pytest
import torch

from flair_elmo_modes.layers import ScalarMix, parse_mode, select_layers


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
    torch.testing.assert_close(out, expected(layers))
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
    torch.testing.assert_close(mix(layers), layers.mean(dim=0))
    weights, gamma = mix.normalized_weights()
    assert weights == pytest.approx([1 / 3] * 3) and gamma == 1.0


def test_mix_with_initial_weights(layers: torch.Tensor) -> None:
    mix = ScalarMix(3, initial_weights=[0.0, 1.0, 2.0])
    s = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=0)
    torch.testing.assert_close(mix(layers), s[0] * layers[0] + s[1] * layers[1] + s[2] * layers[2])


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
    torch.testing.assert_close(together[1, :2], alone[0])
    # each normalised layer has zero mean and unit variance over the sentence's real tokens
    first = layers[0, 0, :3]
    normed = (first - first.mean()) / first.std(unbiased=False)
    torch.testing.assert_close(
        ScalarMix(3, initial_weights=[100.0, 0.0, 0.0], layer_norm=True)(layers, mask)[0, :3], normed
    )


def test_mix_checks_counts(layers: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="got 2 values for 3 layers"):
        ScalarMix(3, initial_weights=[0.0, 1.0])
    with pytest.raises(ValueError, match="built for 4 layers, got 3"):
        ScalarMix(4)(layers)
