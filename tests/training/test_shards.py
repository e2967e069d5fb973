"""Sharded training text: finding shards, streaming them, the epoch's batches, vocabulary files."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.training.data import SPECIAL_TOKENS, TrainingDataError, Vocabulary
from flair_elmo_modes.training.shards import (
    ShardedText,
    count_batches,
    epoch_batches,
    read_sentences,
    shard_sentences,
)


def write_shards(directory: Path, sizes: Sequence[int], name: str = "train-{}.txt") -> list[Path]:
    """Shards whose sentences say where they come from: ``s<shard> n<line> ...`` of varying length."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, size in enumerate(sizes):
        lines = [" ".join([f"s{k}", f"n{i}"] + ["w"] * (i % 7)) for i in range(size)]
        path = directory / name.format(k)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def test_patterns_name_files_directories_and_globs(tmp_path: Path) -> None:
    """The patterns are resolved by flair_elmo_modes.text (tests/test_text.py); training's errors are its own."""
    a, b, c = write_shards(tmp_path / "data", [2, 2, 2])
    assert ShardedText.from_patterns([c, str(tmp_path / "data" / "train-*.txt")]).shards == (c, a, b)
    with pytest.raises(TrainingDataError, match=r"train-9\*\.txt: the pattern matches no file"):
        ShardedText.from_patterns([str(tmp_path / "data" / "train-9*.txt")])
    with pytest.raises(FileNotFoundError, match="training text not found"):
        ShardedText.from_patterns([tmp_path / "missing.txt"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingDataError, match="a directory without files"):
        ShardedText.from_patterns([tmp_path / "empty"])


def test_a_bad_line_is_named_by_shard_and_line(tmp_path: Path) -> None:
    shard = tmp_path / "bad.txt"
    shard.write_bytes(b"good line\nanother\nbad \xff byte\n")
    read = shard_sentences(shard)
    assert next(read) == ["good", "line"] and next(read) == ["another"]
    with pytest.raises(TrainingDataError, match=r"bad\.txt: line 3, column 5: invalid UTF-8 \(bytes ff\)"):
        next(read)


def test_scan_counts_and_skips_empty_shards_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a, b = write_shards(tmp_path, [5, 3])
    empty = tmp_path / "train-empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    text = ShardedText((a, empty, b), max_sentence_tokens=4)
    with caplog.at_level(logging.WARNING):
        stats = text.scan()
    assert stats.empty_shards == [empty] and f"{empty}: no tokens; the shard is skipped" in caplog.text
    sentences = list(text.sentences())
    assert stats.sentences == len(sentences) and stats.predictions == sum(len(s) + 1 for s in sentences)
    assert stats.counts == Counter(token for sentence in sentences for token in sentence)
    assert max(len(s) for s in sentences) == 4  # lines of up to 8 tokens, split
    with pytest.raises(TrainingDataError, match="no tokens found"):
        ShardedText((empty,)).scan()


class CountingText(ShardedText):
    """Counts the sentences read so far."""

    read = 0

    def sentences(self, order: Sequence[int] | None = None) -> Iterator[list[str]]:
        for sentence in super().sentences(order):
            CountingText.read += 1
            yield sentence


@pytest.mark.parametrize(("batch_size", "buffer"), [(4, 1000), (4, 30), (3, 7), (16, 100), (5, 250)])
def test_an_epoch_covers_every_sentence_once_in_a_seeded_order(tmp_path: Path, batch_size: int, buffer: int) -> None:
    text = ShardedText(tuple(write_shards(tmp_path, [40, 1, 75, 30])))
    every = sorted(" ".join(s) for s in text.sentences())

    def epoch(seed: int) -> list[list[list[str]]]:
        return list(epoch_batches(text, batch_size, buffer, torch.Generator().manual_seed(seed)))

    batches = epoch(3)
    assert sorted(" ".join(s) for batch in batches for s in batch) == every
    assert len(batches) == count_batches(len(every), batch_size, buffer)
    assert all(len(batch) <= batch_size for batch in batches)
    assert all([len(s) for s in batch] == sorted(len(s) for s in batch) for batch in batches)
    assert epoch(3) == batches and epoch(4) != batches


def test_batches_come_from_a_bounded_buffer(tmp_path: Path) -> None:
    text = CountingText(tuple(write_shards(tmp_path, [300, 300])))
    CountingText.read = 0
    batches = epoch_batches(text, 4, 50, torch.Generator().manual_seed(0))
    first = next(batches)
    assert CountingText.read == 50 and len(first) <= 4  # not the 600 sentences of the corpus
    shard = first[0][0]  # "s0" or "s1": a buffer holds consecutive sentences of the shard order
    assert all(sentence[0] == shard for sentence in first)


def test_vocabulary_files_in_the_bilm_tf_format(tmp_path: Path) -> None:
    good = tmp_path / "vocab.txt"
    good.write_text("<S>\n</S>\n<UNK>\nthe\ncat\n", encoding="utf-8")
    assert Vocabulary.read(good).words == (*SPECIAL_TOKENS, "the", "cat")
    cases = {
        "the\n<S>\n</S>\n<UNK>\n": "a vocabulary file starts with <S>, </S>, <UNK>",
        "<S>\n</S>\n<UNK>\nthe\nthe\n": r"line 5: 'the' repeats line 4",
        "<S>\n</S>\n<UNK>\nnew york\n": r"line 4: 'new york' is not one word",
    }
    for content, message in cases.items():
        bad = tmp_path / "bad.txt"
        bad.write_text(content, encoding="utf-8")
        with pytest.raises(TrainingDataError, match=message):
            Vocabulary.read(bad)
    with pytest.raises(FileNotFoundError, match="vocabulary file not found"):
        Vocabulary.read(tmp_path / "none.txt")


def test_a_streamed_shard_has_the_lines_of_the_whole_file(tmp_path: Path) -> None:
    shard = tmp_path / "lines.txt"
    text = "a b\r\nc\rd e\u2028f\x0cg\n\n  h  \x85i"
    shard.write_text(text, encoding="utf-8", newline="")
    expected = [line.split() for line in text.splitlines() if line.split()]
    assert list(shard_sentences(shard)) == expected == read_sentences(shard)
