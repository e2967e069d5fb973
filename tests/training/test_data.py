from pathlib import Path

import pytest
import torch

from flair_elmo_modes.bilm.characters import batch_to_ids
from flair_elmo_modes.training.data import (
    EncodedCorpus,
    TrainingDataError,
    Vocabulary,
    make_batches,
    split_long_sentences,
)
from flair_elmo_modes.training.lm import IGNORE_INDEX
from flair_elmo_modes.training.shards import read_sentences


def test_read_sentences_splits_on_whitespace_and_skips_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text("a  b\tc\n\n   \nd é\n", encoding="utf-8")
    assert read_sentences(path) == [["a", "b", "c"], ["d", "é"]]


def test_bad_text_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"training text not found: .*missing\.txt"):
        read_sentences(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(TrainingDataError, match=r"empty\.txt: no tokens found"):
        read_sentences(empty)
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(TrainingDataError, match=r"latin1\.txt: line 1, column 4: invalid UTF-8"):
        read_sentences(binary)


def test_vocabulary_orders_by_count_then_alphabet_after_the_specials() -> None:
    sentences = [["b", "a", "c", "b"], ["c", "d", "b"], ["e"]]
    vocab = Vocabulary.build(sentences)
    assert vocab.words == ("<S>", "</S>", "<UNK>", "b", "c", "a", "d", "e")
    assert vocab.index("c") == 4 and vocab.index("never-seen") == vocab.unk_id == 2
    assert Vocabulary.build(sentences, min_count=2).words[3:] == ("b", "c")
    assert Vocabulary.build(sentences, max_size=5).words[3:] == ("b", "c")
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        Vocabulary.build(sentences, min_count=0)
    with pytest.raises(ValueError, match="a vocabulary starts with"):
        Vocabulary(("a", "b", "c"))


def test_an_encoded_batch_leaves_the_markers_to_the_bilm_and_frames_the_targets() -> None:
    sentences = [["the", "cat"], ["a", "dog", "sat", "down"]]
    vocab = Vocabulary.build([["the", "cat", "the", "dog", "sat"]])
    corpus = EncodedCorpus.build(sentences, vocab)
    assert corpus.n_tokens == 3 + 5 and corpus.n_unk == 2  # "a" and "down"
    char_ids, targets = corpus.batch([0, 1])
    assert char_ids.shape == (2, 4, 50) and targets.shape == (2, 6)
    # the words' ids, as the biLM's token_ids makes them: the biLM adds <S> and </S>
    torch.testing.assert_close(char_ids, batch_to_ids(sentences), rtol=0, atol=0)
    unk = vocab.unk_id
    assert targets.tolist() == [
        [0, vocab.index("the"), vocab.index("cat"), 1, IGNORE_INDEX, IGNORE_INDEX],
        [0, unk, vocab.index("dog"), vocab.index("sat"), unk, 1],
    ]


def test_make_batches_covers_every_sentence_once_and_depends_only_on_the_seed() -> None:
    lengths = [(i * 7) % 23 + 1 for i in range(100)]
    first = make_batches(lengths, 8, torch.Generator().manual_seed(3))
    again = make_batches(lengths, 8, torch.Generator().manual_seed(3))
    other = make_batches(lengths, 8, torch.Generator().manual_seed(4))
    assert first == again and first != other
    assert sorted(i for batch in first for i in batch) == list(range(100))
    in_order = make_batches(lengths, 8)
    flat = [lengths[i] for batch in in_order for i in batch]
    assert flat == sorted(flat)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        make_batches(lengths, 0)


@pytest.mark.parametrize(("length", "limit", "pieces"), [(10, 4, [4, 3, 3]), (8, 4, [4, 4]), (401, 400, [201, 200])])
def test_long_sentences_are_cut_into_nearly_equal_consecutive_pieces(
    length: int, limit: int, pieces: list[int]
) -> None:
    sentence = [f"w{i}" for i in range(length)]
    short = ["a", "b"]
    result = split_long_sentences([short, sentence, short], limit)
    assert [len(piece) for piece in result[1:-1]] == pieces
    assert result[0] == result[-1] == short
    assert [token for piece in result[1:-1] for token in piece] == sentence  # nothing lost or reordered


def test_max_tokens_zero_splits_nothing() -> None:
    sentences = [["a"] * 1000, ["b"]]
    assert split_long_sentences(sentences, 0) == sentences
    with pytest.raises(ValueError, match="max_tokens must be >= 0"):
        split_long_sentences(sentences, -1)
