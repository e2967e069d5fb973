"""The biLM against the numpy bilm-tf reference, for configurations AllenNLP can and cannot load; its
inference path against autograd."""

import copy

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import ElmoOptions, batch_to_ids
from flair_elmo_modes.bilm.hdf5 import state_dict_to_tf
from tests.bilm.helpers import TOKENS
from tests.helpers import assert_as_accurate, float64_tolerance, random_bilm, tiny_options
from tests.reference import reference_layers

SENTENCES = [
    ["I", "ate", "an", "apple", "for", "breakfast", "."],
    ["Zürich", "🙂", "我爱", "", " ", "x" * 60],
    ["one"],
    ["<S>", "literal", "</S>", "markers"],
]

CONFIGURATIONS = {
    "tiny": tiny_options(),
    "relu_no_highway": tiny_options(activation="relu", n_highway=0),
    "one_layer": tiny_options(n_layers=1),
    "three_layers_three_highway": tiny_options(n_layers=3, n_highway=3, filters=((2, 6), (7, 5))),
    "no_skip_connections": tiny_options(use_skip_connections=False, n_layers=3),
    "no_clipping": tiny_options(cell_clip=0.0, proj_clip=0.0),
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
def test_float64_model_matches_the_bilm_tf_reference(name: str) -> None:
    options: ElmoOptions = CONFIGURATIONS[name]
    bilm = random_bilm(options, seed=7).double()
    weights = state_dict_to_tf(random_bilm(options, seed=7))
    # The reference reads the float32 file arrays, in which the forget bias is TF's b - 1, rounded
    # to float32, and adds 1 in float64: give the model that same forget bias, so that both compute
    # the same function of the same float64 numbers.
    cell = options.cell_dim
    with torch.no_grad():
        for k in range(options.n_layers):
            for d in range(2):
                tf_bias = weights[f"RNN_{d}/RNN/MultiRNNCell/Cell{k}/LSTMCell/B"]  # TF gates (i, j, f, o)
                forget = torch.from_numpy(tf_bias[2 * cell : 3 * cell]).double() + 1.0
                getattr(bilm.lstm, f"bias_l{k}")[d, cell : 2 * cell] = forget  # ours (i, f, j, o)
        output = bilm(batch_to_ids(SENTENCES))
        float32 = random_bilm(options, seed=7)(batch_to_ids(SENTENCES)).layers
    assert output.layers.shape == (options.n_layers + 1, len(SENTENCES), 7, 2 * options.projection_dim)
    # another implementation, summing in other orders: float64 rounding (float64_tolerance, from this
    # model's float32 error on the same sentences)
    atol = float64_tolerance(float32, output.layers)
    for row, sentence in enumerate(SENTENCES):
        expected = reference_layers(sentence, weights, options)
        np.testing.assert_allclose(output.layers[:, row, : len(sentence)].numpy(), expected, atol=atol, rtol=0)
        assert not output.layers[:, row, len(sentence) :].any()


def test_clipping_is_reached_in_the_fixture_model() -> None:
    options = tiny_options()
    with torch.no_grad():
        layers = random_bilm(options, seed=7)(batch_to_ids(SENTENCES)).layers
    # layer 1 has no skip connection: its values are clamp's outputs, exactly proj_clip where clipped
    assert layers[1].abs().max() == options.proj_clip


def test_layer_zero_is_the_token_encoding_twice() -> None:
    with torch.no_grad():
        layers = random_bilm()(batch_to_ids(SENTENCES)).layers
    torch.testing.assert_close(layers[0, ..., :8], layers[0, ..., 8:], rtol=0, atol=0)  # one tensor, twice


def test_a_sentence_does_not_depend_on_its_batch() -> None:
    float32_bilm = random_bilm()
    bilm = random_bilm().double()
    with torch.no_grad():
        together = bilm(batch_to_ids(SENTENCES)).layers
        for row, sentence in enumerate(SENTENCES):
            alone = bilm(batch_to_ids([sentence])).layers[:, 0]
            float32_alone = float32_bilm(batch_to_ids([sentence])).layers[:, 0]
            # other batch, other kernel blocking: float64 rounding (float64_tolerance)
            atol = float64_tolerance(float32_alone, alone)
            torch.testing.assert_close(together[:, row, : len(sentence)], alone, rtol=0, atol=atol)


def test_state_is_returned_not_kept() -> None:
    bilm = random_bilm()
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        first = bilm(ids)
        second = bilm(ids)
        carried = bilm(ids, first.state)
    torch.testing.assert_close(first.layers, second.layers, rtol=0, atol=0)
    # first and second are bitwise equal, so any difference is the carried state's; allclose's
    # default margin (rtol 1e-5, ~80 float32 ulps) is far below what the state changes (up to ~4)
    assert not torch.allclose(carried.layers, first.layers)
    assert first.state.hidden.shape == (2, 2, 4, 8) and first.state.memory.shape == (2, 2, 4, 24)


def test_gradients_reach_every_parameter() -> None:
    bilm = random_bilm()
    bilm(batch_to_ids(SENTENCES)).layers.sum().backward()
    missing = [name for name, p in bilm.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_frozen_parameters_get_no_gradient() -> None:
    bilm = random_bilm()
    bilm.char_encoder.requires_grad_(False)
    bilm(batch_to_ids(SENTENCES)).layers.sum().backward()
    assert all(p.grad is None for p in bilm.char_encoder.parameters())
    assert all(p.grad is not None for p in bilm.lstm.parameters())


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
