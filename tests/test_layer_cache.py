"""The layer cache follows the one cache policy: no write to the weights goes unseen."""

import pytest
import torch
from flair.data import Sentence

from flair_elmo_modes.embeddings import ELMoEmbeddings

TEXT = "the cell phone in the prison cell"


def top_vectors(embeddings: ELMoEmbeddings) -> torch.Tensor:
    sentence = Sentence(TEXT)
    embeddings.embed(sentence)
    return torch.stack([token.get_embedding() for token in sentence]).detach()


def change(how: str, embeddings: ELMoEmbeddings) -> None:
    weight = embeddings.bilm.lstm.weight_hh_l1
    if how == ".data":  # PyTorch gives .data its own version counter; we see it all the same
        weight.data.mul_(0.25)
    elif how == "optimizer step":
        weight.grad = torch.ones_like(weight)
        torch.optim.SGD([weight], lr=0.5).step()
    elif how == "load_state_dict":
        state = embeddings.bilm.state_dict()
        state["lstm.weight_hh_l1"] = state["lstm.weight_hh_l1"] * 0.25
        embeddings.bilm.load_state_dict(state)
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", [".data", "optimizer step", "load_state_dict"])
def test_cached_layers_follow_every_weight_write(tiny_model_files, how: str) -> None:
    cached = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top", layer_cache_size=8)
    before = top_vectors(cached)
    assert len(cached.layer_cache) == 1
    change(how, cached)
    after = top_vectors(cached)
    uncached = ELMoEmbeddings(bilm=cached.bilm, embedding_type="top")
    # the write moves the layers by O(0.1); a stale cache would give them unchanged
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(after, top_vectors(uncached), rtol=0, atol=0)


def test_a_move_to_the_same_device_keeps_the_cache_and_a_cast_drops_it(tiny_model_files) -> None:
    cached = ELMoEmbeddings(tiny_model_files[0].parent, embedding_type="top", layer_cache_size=8)
    top_vectors(cached)
    cached.to("cpu")  # Flair's taggers do this on construction: nothing changes
    assert len(cached.layer_cache) == 1
    cached.double()
    assert len(cached.layer_cache) == 0
    assert top_vectors(cached).dtype == torch.float64
