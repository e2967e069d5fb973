"""The count-based baseline of the model card (``scripts/kneser_ney.py``) is a proper distribution."""

import random

import pytest

from scripts import kneser_ney
from tests.helpers import FLOAT64_EPS


@pytest.mark.parametrize("order", [1, 2, 3])
def test_probabilities_sum_to_one_for_seen_and_unseen_histories(order: int) -> None:
    rng = random.Random(order)
    sentences = [[rng.randrange(3, 20) for _ in range(rng.randrange(1, 8))] for _ in range(200)]
    model = kneser_ney.KneserNey(sentences, order, vocab_size=20, start=0, end=1)
    for history in [(0, 0), (0, 5), (5, 7), (19, 2)]:
        history = history[2 - (order - 1) :] if order > 1 else ()
        # float64: each interpolation level rounds ~6 times, the sum of 20 probabilities 19 times, all
        # of values <= 1: half an ulp each, so the sum is within (20 + 6 * order) half-ulps of 1
        total = sum(model.prob(history, word) for word in range(20))
        assert total == pytest.approx(1.0, rel=0, abs=(20 + 6 * order) * FLOAT64_EPS / 2)


def test_higher_order_fits_training_text_better() -> None:
    rng = random.Random(0)
    sentences = [[3 + (i + rng.randrange(2)) % 5 for i in range(10)] for _ in range(100)]
    nll = {order: kneser_ney.KneserNey(sentences, order, 10, 0, 1).nll(sentences)[0] for order in (1, 2, 3)}
    assert nll[3] < nll[2] < nll[1]
