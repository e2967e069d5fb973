"""Training text: one sentence per line, tokens separated by whitespace; the vocabulary; batches.

A batch becomes rows of *type ids*: every distinct token of the batch gets one row in a
character-id table and one entry in a word-id table, so its character ids and LM targets are two
lookups (:func:`encode_batch`). Sentence markers are the biLM's to add to the character ids; the
targets hold their word ids. Sharded corpora are streamed by :mod:`flair_elmo_modes.training.shards`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from flair_elmo_modes.bilm.characters import BOS_TOKEN, EOS_TOKEN, MAX_CHARACTERS_PER_TOKEN, token_to_ids
from flair_elmo_modes.bilm.errors import require_file
from flair_elmo_modes.training.lm import IGNORE_INDEX

UNK_TOKEN = "<UNK>"
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)
PAD_TYPE = 0  # type id of padding: zero character ids, target IGNORE_INDEX


class TrainingDataError(ValueError):
    """Training text or a vocabulary file that cannot be used (missing, empty, not UTF-8)."""


def split_long_sentences(sentences: Sequence[Sequence[str]], max_tokens: int) -> list[list[str]]:
    """Sentences of more than ``max_tokens`` tokens cut into consecutive pieces of nearly equal length.

    The memory of a training step grows with its longest sentence (a line of 100,000 tokens
    needs about 10 GiB); every piece becomes a sentence of its own, with its own markers. A line
    of ``n`` tokens becomes ``ceil(n / max_tokens)`` pieces whose lengths differ by at most one.
    ``max_tokens`` 0 splits nothing.

    Raises:
        ValueError: ``max_tokens`` is negative.
    """
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0 (0: no limit), got {max_tokens}")
    result: list[list[str]] = []
    for sentence in sentences:
        if not max_tokens or len(sentence) <= max_tokens:
            result.append(list(sentence))
            continue
        pieces = -(-len(sentence) // max_tokens)  # ceil
        size, extra = divmod(len(sentence), pieces)  # the first `extra` pieces get one token more
        start = 0
        for piece in range(pieces):
            end = start + size + (1 if piece < extra else 0)
            result.append(list(sentence[start:end]))
            start = end
    return result


@dataclass(frozen=True)
class Vocabulary:
    """Output words of the language models: ``<S>``, ``</S>``, ``<UNK>``, then by decreasing count.

    The frequency order is what the adaptive softmax's clusters rely on.
    """

    words: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.words[: len(SPECIAL_TOKENS)] != SPECIAL_TOKENS:
            raise ValueError(f"a vocabulary starts with {SPECIAL_TOKENS}, got {self.words[:3]}")
        object.__setattr__(self, "_index", {word: i for i, word in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    @property
    def unk_id(self) -> int:
        return SPECIAL_TOKENS.index(UNK_TOKEN)

    def index(self, word: str) -> int:
        """Id of ``word``, or of ``<UNK>`` when it is not in the vocabulary."""
        return self._index.get(word, self.unk_id)  # type: ignore[attr-defined]

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """Words seen at least ``min_count`` times, at most ``max_size`` entries in all (specials included).

        Ties in count are broken alphabetically, so the vocabulary does not depend on line order.
        """
        return cls.from_counts(Counter(token for sentence in sentences for token in sentence), min_count, max_size)

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """As :meth:`build`, from word counts."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"max_size must be > {len(SPECIAL_TOKENS)} (the special tokens), got {max_size}")
        kept = sorted(
            (word for word, count in counts.items() if count >= min_count and word not in SPECIAL_TOKENS),
            key=lambda word: (-counts[word], word),
        )
        if max_size is not None:
            kept = kept[: max_size - len(SPECIAL_TOKENS)]
        return cls((*SPECIAL_TOKENS, *kept))

    @classmethod
    def read(cls, path: str | Path) -> Vocabulary:
        """A vocabulary file in bilm-tf's format: one word per line, ``<S>``, ``</S>``, ``<UNK>`` first,
        then the words by decreasing count (the order the adaptive softmax's clusters rely on).

        Raises:
            FileNotFoundError: no file at ``path``.
            TrainingDataError: not UTF-8, the special tokens are not the first three lines, a line
                holds whitespace inside a word, or a word occurs twice.
        """
        path = require_file(path, "vocabulary file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise TrainingDataError(f"{path}: not UTF-8 text ({error})") from error
        words = [line.strip() for line in lines]
        if tuple(words[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise TrainingDataError(
                f"{path}: the first lines are {words[:3]}; a vocabulary file starts with "
                f"{', '.join(SPECIAL_TOKENS)} (one per line), then one word per line by decreasing count"
            )
        seen: dict[str, int] = {}
        for number, word in enumerate(words, start=1):
            if not word or len(word.split()) != 1:
                raise TrainingDataError(f"{path}, line {number}: {word!r} is not one word")
            if word in seen:
                raise TrainingDataError(f"{path}, line {number}: {word!r} repeats line {seen[word]}")
            seen[word] = number
        return cls(tuple(words))


def encode_batch(
    sentences: Sequence[Sequence[str]], vocab: Vocabulary, max_characters: int = MAX_CHARACTERS_PER_TOKEN
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs of some sentences: the character ids of their words and the LM targets.

    The character ids are those of the words alone, as
    :meth:`~flair_elmo_modes.bilm.model.ElmoBiLm.token_ids` makes them: the biLM puts ``<S>``
    and ``</S>`` around each sentence itself. The targets are the word ids of the positions the
    biLM then has, ``<S> w_1 .. w_n </S>`` (the backward LM predicts ``<S>``, the forward LM
    ``</S>``).

    Returns:
        ``(batch, timesteps, max_chars)`` character ids (``timesteps``: the longest sentence; rows
        of zeros pad) and ``(batch, timesteps + 2)`` target word ids (``IGNORE_INDEX`` as padding).
    """
    type_ids: dict[str, int] = {}  # each distinct token of the batch is encoded once; 0 is padding
    rows = [
        torch.tensor([type_ids.setdefault(token, len(type_ids) + 1) for token in sentence], dtype=torch.long)
        for sentence in sentences
    ]
    types = list(type_ids)  # in type id order, starting at 1
    char_table = torch.zeros(len(types) + 1, max_characters, dtype=torch.long)
    if types:
        char_table[1:] = torch.tensor([token_to_ids(t, max_characters) for t in types], dtype=torch.long)
    word_table = torch.tensor([IGNORE_INDEX] + [vocab.index(t) for t in types], dtype=torch.long)
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD_TYPE)  # (batch, T)
    batch, timesteps = padded.shape
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    targets = torch.full((batch, timesteps + 2), IGNORE_INDEX, dtype=torch.long)
    targets[:, 0] = vocab.index(BOS_TOKEN)
    targets[:, 1:-1] = word_table[padded]
    targets[torch.arange(batch), lengths + 1] = vocab.index(EOS_TOKEN)
    return char_table[padded], targets


def count_predictions(sentences: Iterable[Sequence[str]]) -> int:
    """Predictions per direction: words plus one sentence marker per sentence."""
    return sum(len(sentence) + 1 for sentence in sentences)


@dataclass(frozen=True)
class EncodedCorpus:
    """Sentences held in memory with their vocabulary (a dev text, an evaluation text).

    Attributes:
        sentences: the token lists.
        vocab: maps words to targets.
        max_characters: characters per token of the model.
        n_unk: words mapped to ``<UNK>``.
    """

    sentences: list[list[str]]
    vocab: Vocabulary
    max_characters: int
    n_unk: int

    @property
    def n_tokens(self) -> int:
        """Predictions per direction: words plus one sentence marker per sentence."""
        return count_predictions(self.sentences)

    @classmethod
    def build(
        cls, sentences: Sequence[Sequence[str]], vocab: Vocabulary, max_characters: int = MAX_CHARACTERS_PER_TOKEN
    ) -> EncodedCorpus:
        n_unk = sum(vocab.index(token) == vocab.unk_id for sentence in sentences for token in sentence)
        return cls([list(sentence) for sentence in sentences], vocab, max_characters, n_unk)

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`encode_batch` of some sentences."""
        return encode_batch([self.sentences[i] for i in indices], self.vocab, self.max_characters)


def make_batches(
    lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None, pool: int = 50
) -> list[list[int]]:
    """Group sentence indices into batches of similar length.

    Without ``generator`` the order is by length (evaluation). With it, sentences are shuffled,
    sorted by length within pools of ``pool * batch_size``, cut into batches, and the batches
    shuffled: the order depends only on the generator's seed.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(lengths)
    if generator is None:
        order = sorted(range(n), key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    shuffled = torch.randperm(n, generator=generator).tolist()
    batches = []
    step = pool * batch_size
    for start in range(0, n, step):
        chunk = sorted(shuffled[start : start + step], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]
