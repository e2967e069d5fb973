"""``runner.py``: token validation, the one runner and the one batching window."""

from __future__ import annotations

import numpy as np
import pytest

from flair_elmo_modes.runner import BiLmRunner, as_token_lists, length_batches, length_sorted_windows
from tests.helpers import random_bilm


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([["a", None]], "sentence 0, token 1: tokens must be str, got NoneType None"),
        ([["a"], ["b", 5]], "sentence 1, token 1: tokens must be str, got int 5"),
        ([[b"x"]], "sentence 0, token 0: tokens must be str, got bytes b'x'"),
        ([["a", 2.5, "b"]], "sentence 0, token 1: tokens must be str, got float 2.5"),
        ([None], "sentence 0 is NoneType None; expected a sequence of str tokens"),
        ([5], "sentence 0 is int 5; expected a sequence of str tokens"),
        ([b"a b"], "sentence 0 is the bytes b'a b'; expected a sequence of str tokens (e.g. text.split())"),
        (["a b"], "sentence 0 is the str 'a b'; expected a sequence of str tokens (e.g. text.split())"),
        ("a b", "expected a batch of tokenized sentences, got the str 'a b'"),
        (None, "expected a batch of tokenized sentences, got NoneType None"),
    ],
)
def test_tokens_that_are_not_str_are_refused_with_their_position(batch: object, message: str) -> None:
    with pytest.raises(TypeError) as info:
        as_token_lists(batch)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_sequences_and_numpy_arrays_become_lists_of_str() -> None:
    assert as_token_lists([("a", "b"), ["c"], []]) == [["a", "b"], ["c"], []]
    converted = as_token_lists(np.array([["a", "b"], ["c", "d"]]))
    assert converted == [["a", "b"], ["c", "d"]] and all(type(t) is str for s in converted for t in s)
    assert as_token_lists([np.array(["x", "yz"])]) == [["x", "yz"]]
    assert as_token_lists(iter([["a"]])) == [["a"]]


def test_runner_refuses_a_none_token_instead_of_embedding_the_word_none() -> None:
    runner = BiLmRunner(random_bilm())
    with pytest.raises(TypeError, match="tokens must be str, got NoneType None"):
        runner.run([["a", None]])  # type: ignore[list-item]


def test_length_sorted_windows_with_huge_sizes_reads_everything_into_one_window() -> None:
    items = ["ccc", "a", "bb"]
    windows = list(length_sorted_windows(items, len, batch_size=10**18, sort_batches=10**18))
    assert windows == [(items, [[1, 2, 0]])]
    assert length_batches([3, 1, 2], 2, by_length=False) == [[0, 1], [2]]
