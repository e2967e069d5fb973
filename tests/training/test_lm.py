import copy

import pytest
import torch

from flair_elmo_modes.bilm.characters import batch_to_ids
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.training.lm import BiLanguageModel, Softmax
from tests.helpers import FLOAT32_EPS, FLOAT64_EPS, TINY_OPTIONS, assert_as_accurate, random_bilm

SENTENCES = [["The", "cat", "sat", "."], ["Dogs", "bark"]]


def top_with_markers(bilm: ElmoBiLm, char_ids: torch.Tensor) -> torch.Tensor:
    """What the language models read: the top layer at ``<S> w_1 .. w_n </S>`` (the biLM adds the markers)."""
    return bilm(char_ids, keep_boundaries=True).layers[-1]  # (batch, timesteps + 2, 2 * proj)


def test_the_top_layer_with_markers_matches_the_bilm_at_word_positions() -> None:
    bilm = random_bilm(seed=2, scale=0.3)
    char_ids = batch_to_ids(SENTENCES)
    top = top_with_markers(bilm, char_ids)
    layers = bilm(char_ids).layers  # (n_layers + 1, batch, timesteps, 2 * proj)
    for row, sentence in enumerate(SENTENCES):
        n = len(sentence)
        # the same biLM run on the same words, same batch: bitwise
        torch.testing.assert_close(top[row, 1 : n + 1], layers[-1, row, :n], rtol=0, atol=0)
        assert torch.count_nonzero(top[row, n + 2 :]) == 0


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_each_direction_only_sees_its_own_side(direction: str) -> None:
    bilm = random_bilm(seed=5, scale=0.3)
    dim = TINY_OPTIONS.projection_dim
    original = batch_to_ids([["a", "b", "c", "d", "e"]])
    changed = batch_to_ids([["a", "b", "X", "d", "e"]])  # position 3 of the framed sentence
    top_a = top_with_markers(bilm, original)[0]
    top_b = top_with_markers(bilm, changed)[0]
    if direction == "forward":
        unaffected, affected = slice(0, 3), slice(3, 7)
        half = slice(0, dim)
    else:
        unaffected, affected = slice(4, 7), slice(0, 4)
        half = slice(dim, 2 * dim)
    torch.testing.assert_close(top_a[unaffected, half], top_b[unaffected, half], rtol=0, atol=0)
    # Every affected position changes, by more than rounding could: the unaffected ones are bitwise
    # equal (the same computation), and 1e-3 is ~10^4 float32 roundings of these values (below 1;
    # the smallest change is 4e-3).
    change = (top_a[affected, half] - top_b[affected, half]).abs().amax(dim=-1)
    assert (change > 1e-3).all(), change


def test_loss_counts_one_marker_per_sentence_and_matches_explicit_log_probs() -> None:
    torch.manual_seed(0)
    model = BiLanguageModel(TINY_OPTIONS, vocab_size=12, softmax="full", share_softmax=False, dropout=0.0).eval()
    char_ids = batch_to_ids(SENTENCES)
    lengths = torch.tensor([len(s) + 2 for s in SENTENCES])  # with the markers
    targets = torch.tensor([[0, 3, 4, 5, 6, 1], [0, 7, 8, 1, -1, -1]])  # word ids of <S> w_1 .. w_n </S>
    loss = model(char_ids, targets)
    exact = copy.deepcopy(model).double()(char_ids, targets)
    assert loss.count == 5 + 3
    top = top_with_markers(model.bilm, char_ids)
    dim = TINY_OPTIONS.projection_dim
    expected_forward = expected_backward = 0.0
    for row, n in enumerate(lengths.tolist()):
        forward_lp = model.forward_softmax.log_prob(top[row, : n - 1, :dim])  # predicts positions 1..n-1
        backward_lp = model.backward_softmax.log_prob(top[row, 1:n, dim:])  # predicts positions 0..n-2
        expected_forward -= forward_lp.gather(1, targets[row, 1:n, None]).sum()
        expected_backward -= backward_lp.gather(1, targets[row, : n - 1, None]).sum()
    # gathered for the whole batch vs one row at a time: float32 rounding only, against float64
    assert_as_accurate(loss.forward_nll, expected_forward, exact.forward_nll)
    assert_as_accurate(loss.backward_nll, expected_backward, exact.backward_nll)


def test_shared_softmax_is_one_module() -> None:
    shared = BiLanguageModel(TINY_OPTIONS, vocab_size=50, cutoffs=(10, 30))
    separate = BiLanguageModel(TINY_OPTIONS, vocab_size=50, cutoffs=(10, 30), share_softmax=False)
    assert shared.backward_softmax is shared.forward_softmax
    assert separate.backward_softmax is not separate.forward_softmax
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    head = sum(p.numel() for p in shared.forward_softmax.parameters())
    assert count(separate) == count(shared) + head


def test_adaptive_softmax_is_a_distribution_and_falls_back_to_full() -> None:
    softmax = Softmax(8, 40, "adaptive", (5, 20))
    assert softmax.kind == "adaptive" and softmax.cutoffs == (5, 20)
    inputs = torch.randn(3, 8)
    # Each log-probability is a few roundings of values up to L = max |log p| + 1 (a log-softmax,
    # plus the cluster's for tail words): exp turns that into a relative error of p; summing 40
    # probabilities adds 39 half-ulps of their total. So the sum is within 40 * eps * L of 1 in
    # float32, and, from the float64 copy, in float64.
    for dtype, eps in ((torch.float32, FLOAT32_EPS), (torch.float64, FLOAT64_EPS)):
        log_prob = copy.deepcopy(softmax).to(dtype).log_prob(inputs.to(dtype))  # (3, 40)
        atol = 40 * eps * (float(log_prob.detach().abs().max()) + 1)
        torch.testing.assert_close(log_prob.exp().sum(-1), torch.ones(3, dtype=dtype), rtol=0, atol=atol)
    assert Softmax(8, 4, "adaptive", (5, 20)).kind == "full"  # no cutoff below the vocabulary size
    with pytest.raises(ValueError, match="softmax must be one of"):
        Softmax(8, 40, "hierarchical")
