"""The biLM against the numpy bilm-tf reference, for configurations AllenNLP can and cannot load."""

import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import ElmoOptions, batch_to_ids
from flair_elmo_modes.bilm.hdf5 import state_dict_to_tf
from tests.helpers import random_bilm, tiny_options
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
    with torch.no_grad():
        output = bilm(batch_to_ids(SENTENCES))
    assert output.layers.shape == (options.n_layers + 1, len(SENTENCES), 7, 2 * options.projection_dim)
    for row, sentence in enumerate(SENTENCES):
        expected = reference_layers(sentence, weights, options)
        # The reference reads the float32 file arrays; the model holds the same float32 values
        # except the forget bias (+1 rounded once), hence 1e-6 and not 1e-12.
        np.testing.assert_allclose(output.layers[:, row, : len(sentence)].numpy(), expected, atol=1e-6, rtol=0)
        assert not output.layers[:, row, len(sentence) :].any()


def test_clipping_is_reached_in_the_fixture_model() -> None:
    options = tiny_options()
    with torch.no_grad():
        layers = random_bilm(options, seed=7)(batch_to_ids(SENTENCES)).layers
    assert layers[1].abs().max() == pytest.approx(options.proj_clip)  # layer 1 has no skip connection


def test_layer_zero_is_the_token_encoding_twice() -> None:
    with torch.no_grad():
        layers = random_bilm()(batch_to_ids(SENTENCES)).layers
    torch.testing.assert_close(layers[0, ..., :8], layers[0, ..., 8:])


def test_a_sentence_does_not_depend_on_its_batch() -> None:
    bilm = random_bilm().double()
    with torch.no_grad():
        together = bilm(batch_to_ids(SENTENCES)).layers
        for row, sentence in enumerate(SENTENCES):
            alone = bilm(batch_to_ids([sentence])).layers[:, 0]
            torch.testing.assert_close(together[:, row, : len(sentence)], alone, rtol=0, atol=1e-12)


def test_state_is_returned_not_kept() -> None:
    bilm = random_bilm()
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        first = bilm(ids)
        second = bilm(ids)
        carried = bilm(ids, first.state)
    torch.testing.assert_close(first.layers, second.layers, rtol=0, atol=0)
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


def test_deduplicated_char_encoding_equals_token_by_token() -> None:
    encoder = random_bilm().char_encoder
    ids = batch_to_ids([["a", "b", "a", "a"], ["b", "", "a"], ["a"]])
    with torch.no_grad():
        fast = encoder(ids)
        slow = encoder.encode_distinct(ids.view(-1, 50)).view(3, 4, -1)
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)
