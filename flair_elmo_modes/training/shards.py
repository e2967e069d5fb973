"""Training text in shards, read lazily: files, directories and globs of one-sentence-per-line text.

A corpus is a list of shard files (:func:`~flair_elmo_modes.text.resolve_shards`). Training never holds it in memory:
:meth:`ShardedText.scan` counts words and sentences in one streaming pass (for the vocabulary and
the number of steps), and :func:`epoch_batches` streams one epoch's batches: shards in an order
drawn for the epoch, sentences gathered into a bounded shuffle buffer, each buffer shuffled and cut
into batches of similar length. Memory grows with the buffer (and the vocabulary), not with the
corpus.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flair_elmo_modes.bilm.errors import require_file
from flair_elmo_modes.checksums import file_sha256
from flair_elmo_modes.text import TextError, file_lines, resolve_shards
from flair_elmo_modes.training.data import TrainingDataError, make_batches, split_long_sentences

logger = logging.getLogger(__name__)

# Sentences sorted by length together inside a shuffle buffer, in batches (see make_batches).
LENGTH_POOL_BATCHES = 50


def shard_sentences(shard: Path, max_tokens: int = 0) -> Iterator[list[str]]:
    """The sentences of one shard, read line by line (:func:`~flair_elmo_modes.text.file_lines`);
    blank lines skipped, lines longer than ``max_tokens`` split (see
    :func:`~flair_elmo_modes.training.data.split_long_sentences`).

    A sentence ends at every line boundary of ``str.splitlines`` (``\u2028``, ``\x85`` and the
    others included), not only at those of the text's lines.

    Raises:
        TrainingDataError: the shard cannot be read, or is not UTF-8 (naming shard, line and column).
    """
    try:
        for line in file_lines(shard):
            for piece in line.text.splitlines():
                tokens = piece.split()
                if tokens:
                    yield from split_long_sentences([tokens], max_tokens)
    except TextError as error:
        raise TrainingDataError(str(error)) from None


def read_sentences(path: str | Path) -> list[list[str]]:
    """The sentences of one text file (:func:`shard_sentences`), in memory.

    Raises:
        FileNotFoundError: no file at ``path``.
        TrainingDataError: the file is not UTF-8 (naming the line) or holds no tokens.
    """
    path = require_file(path, "training text")
    sentences = list(shard_sentences(path))
    if not sentences:
        raise TrainingDataError(f"{path}: no tokens found; expected one whitespace-tokenized sentence per line")
    return sentences


@dataclass
class TextStats:
    """What one streaming pass over a corpus found.

    Attributes:
        sentences: sentences (after splitting long lines).
        predictions: predictions per direction: words plus one sentence marker per sentence.
        counts: how often each word occurs.
        empty_shards: shards without a token (skipped).
    """

    sentences: int = 0
    predictions: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    empty_shards: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class ShardedText:
    """A corpus of shards with its line-splitting rule.

    Attributes:
        shards: the shard files (see :func:`~flair_elmo_modes.text.resolve_shards`).
        max_sentence_tokens: longer lines are split (0: no limit).
    """

    shards: tuple[Path, ...]
    max_sentence_tokens: int = 0

    @classmethod
    def from_patterns(cls, patterns: Sequence[str | Path], max_sentence_tokens: int = 0) -> ShardedText:
        """The shards of ``patterns`` (:func:`~flair_elmo_modes.text.resolve_shards`).

        Raises:
            FileNotFoundError: a path (not a glob) names nothing.
            TrainingDataError: no pattern, a glob matching no file, or a directory without files.
        """
        try:
            shards = resolve_shards(patterns)
        except TextError as error:
            raise TrainingDataError(str(error)) from None
        return cls(tuple(shards), max_sentence_tokens)

    def sentences(self, order: Sequence[int] | None = None) -> Iterator[list[str]]:
        """Every sentence, shard after shard (in ``order``, shard indices, when given)."""
        for index in range(len(self.shards)) if order is None else order:
            yield from shard_sentences(self.shards[index], self.max_sentence_tokens)

    def scan(self, count_words: bool = True) -> TextStats:
        """One pass: sentences, predictions and (with ``count_words``) word counts.

        Shards without a token are logged as warnings and recorded in ``empty_shards``.

        Raises:
            TrainingDataError: a shard is unreadable or not UTF-8, or no shard holds a token.
        """
        stats = TextStats()
        for shard in self.shards:
            before = stats.sentences
            for sentence in shard_sentences(shard, self.max_sentence_tokens):
                stats.sentences += 1
                stats.predictions += len(sentence) + 1
                if count_words:
                    stats.counts.update(sentence)
            if stats.sentences == before:
                logger.warning("%s: no tokens; the shard is skipped", shard)
                stats.empty_shards.append(shard)
        if not stats.sentences:
            names = ", ".join(str(s) for s in self.shards[:3]) + (" ..." if len(self.shards) > 3 else "")
            raise TrainingDataError(f"{names}: no tokens found; expected one whitespace-tokenized sentence per line")
        return stats


def epoch_batches(
    text: ShardedText, batch_size: int, buffer: int, generator: torch.Generator
) -> Iterator[list[list[str]]]:
    """One epoch's batches, each a list of sentences, drawn from ``generator`` alone.

    Shards are read in an order drawn from ``generator``; consecutive runs of ``buffer``
    sentences are shuffled, sorted by length in pools of ``LENGTH_POOL_BATCHES`` batches, cut into
    batches and the batches of a buffer shuffled (:func:`~flair_elmo_modes.training.data.make_batches`).
    A batch's sentences are sorted by length. :func:`count_batches` gives their number.
    """
    if buffer < 1:
        raise ValueError(f"shuffle buffer must be >= 1 sentence, got {buffer}")
    order = torch.randperm(len(text.shards), generator=generator).tolist()
    pool: list[list[str]] = []
    for sentence in text.sentences(order):
        pool.append(sentence)
        if len(pool) == buffer:
            yield from _pool_batches(pool, batch_size, generator)
            pool = []
    if pool:
        yield from _pool_batches(pool, batch_size, generator)


def _pool_batches(pool: list[list[str]], batch_size: int, generator: torch.Generator) -> Iterator[list[list[str]]]:
    lengths = [len(sentence) + 2 for sentence in pool]  # the markers count
    for indices in make_batches(lengths, batch_size, generator, pool=LENGTH_POOL_BATCHES):
        yield [pool[i] for i in indices]


def count_batches(sentences: int, batch_size: int, buffer: int) -> int:
    """How many batches :func:`epoch_batches` makes of ``sentences`` sentences."""
    length_pool = LENGTH_POOL_BATCHES * batch_size

    def in_buffer(n: int) -> int:
        return (n // length_pool) * LENGTH_POOL_BATCHES + math.ceil((n % length_pool) / batch_size)

    return (sentences // buffer) * in_buffer(buffer) + in_buffer(sentences % buffer)


def text_identity(shards: Sequence[Path], vocab_file: Path | None) -> dict[str, Any]:
    """What a run trains on, as a checkpoint records it: each shard's path, size, mtime and SHA-256,
    and the vocabulary file's SHA-256 (None: the vocabulary is counted in the text).

    The hash is of every byte, not a sample: SHA-256 runs at about 0.6 s per GB here, less than the
    streaming pass that counts the text (README, "Training a biLM"), and a sample would miss an edit
    between its blocks.

    Raises:
        TrainingDataError: a file cannot be read.
    """

    def identify(path: Path) -> dict[str, Any]:
        try:
            status = path.stat()
            digest = file_sha256(path)
        except OSError as error:
            raise TrainingDataError(f"{path}: cannot be read ({error.strerror or error})") from error
        return {"path": str(path.resolve()), "size": status.st_size, "mtime_ns": status.st_mtime_ns, "sha256": digest}

    return {
        "shards": [identify(shard) for shard in shards],
        "vocab_file": None if vocab_file is None else identify(vocab_file),
    }


def text_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """How the text of :func:`text_identity` ``current`` differs from ``recorded``: one phrase per
    changed, added or removed shard, and for the vocabulary file; [] when the bytes are the same
    (a shard touched but not changed counts as the same)."""
    before = {entry["path"]: entry["sha256"] for entry in recorded["shards"]}
    now = {entry["path"]: entry["sha256"] for entry in current["shards"]}
    changes = [f"{path} changed (its SHA-256 differs)" for path in now if path in before and before[path] != now[path]]
    changes += [f"{path} was added" for path in now if path not in before]
    changes += [f"{path} was removed" for path in before if path not in now]
    old_vocab, new_vocab = recorded["vocab_file"], current["vocab_file"]
    if (old_vocab or {}).get("sha256") != (new_vocab or {}).get("sha256"):
        changes.append(f"the vocabulary file {(new_vocab or old_vocab)['path']} changed")
    return changes
