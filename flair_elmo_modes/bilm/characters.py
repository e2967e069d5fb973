"""Tokens to ELMo character ids, exactly as AllenNLP's ``ELMoCharacterMapper``.

A token becomes its UTF-8 bytes cut at 48 bytes (the cut may fall inside a multi-byte
character), framed by begin-of-word and end-of-word markers and padded to 50 slots. The
sentence markers ``<S>`` and ``</S>`` are one-character words holding ids 256 and 257. Every
id is shifted by +1 so that 0 can pad a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

MAX_CHARACTERS_PER_TOKEN = 50

BEGIN_OF_SENTENCE = 256
END_OF_SENTENCE = 257
BEGIN_OF_WORD = 258
END_OF_WORD = 259
PADDING = 260
ID_OFFSET = 1  # every id is shifted so that 0 is free for batch padding

BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"


def marker_ids(marker: int, max_characters: int = MAX_CHARACTERS_PER_TOKEN) -> list[int]:
    """Ids of a sentence marker word: begin-of-word, ``marker``, end-of-word, padding."""
    ids = [PADDING] * max_characters
    ids[0], ids[1], ids[2] = BEGIN_OF_WORD, marker, END_OF_WORD
    return [i + ID_OFFSET for i in ids]


def token_to_ids(token: str, max_characters: int = MAX_CHARACTERS_PER_TOKEN) -> list[int]:
    """The ``max_characters`` ids of one token (ids already shifted by +1, no 0 inside)."""
    if token == BOS_TOKEN:
        return marker_ids(BEGIN_OF_SENTENCE, max_characters)
    if token == EOS_TOKEN:
        return marker_ids(END_OF_SENTENCE, max_characters)
    # "ignore" mirrors AllenNLP: lone surrogates, the only unencodable str content, are dropped.
    encoded = token.encode("utf-8", "ignore")[: max_characters - 2]
    ids = [PADDING + ID_OFFSET] * max_characters
    ids[0] = BEGIN_OF_WORD + ID_OFFSET
    ids[1 : len(encoded) + 1] = [byte + ID_OFFSET for byte in encoded]
    ids[len(encoded) + 1] = END_OF_WORD + ID_OFFSET
    return ids


def batch_to_ids(sentences: Sequence[Sequence[str]], max_characters: int = MAX_CHARACTERS_PER_TOKEN) -> torch.Tensor:
    """Character ids of a batch of tokenized sentences, without sentence markers.

    Args:
        sentences: ``batch`` lists of token strings.
        max_characters: slots per token (50 in every published model).

    Returns:
        ``(batch, timesteps, max_characters)`` int64 ids; ``timesteps`` is the longest sentence, shorter
        sentences are padded with 0 (as AllenNLP's ``batch_to_ids``).
    """
    return sentences_to_ids(sentences, max_characters, lambda token: token_to_ids(token, max_characters))


def sentences_to_ids(
    sentences: Sequence[Sequence[str]], width: int, token_ids: Callable[[str], list[int]]
) -> torch.Tensor:
    """``(batch, timesteps, width)`` int64 ids of tokenized sentences, ``token_ids`` giving each distinct
    token's ``width`` ids once per batch; shorter sentences are padded with rows of 0."""
    timesteps = max((len(sentence) for sentence in sentences), default=0)
    ids = torch.zeros((len(sentences), timesteps, width), dtype=torch.long)
    cache: dict[str, list[int]] = {}
    for row, sentence in enumerate(sentences):
        if sentence:
            rows = [cache[t] if t in cache else cache.setdefault(t, token_ids(t)) for t in sentence]
            ids[row, : len(sentence)] = torch.tensor(rows, dtype=torch.long)
    return ids
