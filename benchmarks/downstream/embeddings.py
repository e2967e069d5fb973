"""Baseline embeddings of the downstream experiment: Flair's character features, batched.

Flair's ``CharacterEmbeddings`` runs its character BiLSTM once per sentence and copies each
token's vector with a Python loop (and an O(n²) matching of tokens); on a CPU that is about 80%
of a baseline tagger's epoch. :class:`BatchedCharacterEmbeddings` keeps its parameters and its
output and only computes them for every token of a mini-batch at once.

One difference: Flair's matching maps tokens back by their character ids, so when two tokens of a
sentence have the same ids (``the`` twice), the first one gets another token's vector. Here every
token gets its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import flair
import torch
from flair.data import Dictionary, Sentence
from flair.embeddings import CharacterEmbeddings


def char_dictionary(sentences: Sequence[Sentence]) -> Dictionary:
    """Characters of the sentences (plus ``<unk>``, index 0), most frequent first.

    Flair's default ``Dictionary.load("common-chars")`` downloads a file; this one is built from
    the tagger's training data, as the word vocabulary is.
    """
    counts: dict[str, int] = {}
    for sentence in sentences:
        for token in sentence:
            for char in token.text:
                counts[char] = counts.get(char, 0) + 1
    dictionary = Dictionary(add_unk=True)
    for char, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        dictionary.add_item(char)
    return dictionary


class BatchedCharacterEmbeddings(CharacterEmbeddings):
    """Flair's ``CharacterEmbeddings`` (Lample et al., 2016), one LSTM call per mini-batch.

    Same parameters (``char_embedding``, ``char_rnn``) and the same vector per token as Flair's
    class: the BiLSTM's output at the token's last character, forward and backward halves
    (so, as in Flair, the backward half has read only the last character).
    """

    def _add_embeddings_internal(self, sentences: list[Sentence]) -> list[Sentence]:
        tokens = [token for sentence in sentences for token in sentence]
        if not tokens:
            return sentences
        indices = [[self.char_dictionary.get_idx_for_item(char) for char in token.text] or [0] for token in tokens]
        lengths = torch.tensor([len(chars) for chars in indices], dtype=torch.long)
        chars = torch.zeros(len(tokens), int(lengths.max()), dtype=torch.long)  # (tokens, max_chars)
        for row, token_chars in enumerate(indices):
            chars[row, : len(token_chars)] = torch.tensor(token_chars, dtype=torch.long)
        embedded = self.char_embedding(chars.to(flair.device))  # (tokens, max_chars, char_embedding_dim)
        packed = torch.nn.utils.rnn.pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        output, _ = self.char_rnn(packed)
        padded, _ = torch.nn.utils.rnn.pad_packed_sequence(output, batch_first=True)  # (tokens, max_chars, 2 * hidden)
        last = padded[torch.arange(len(tokens)), lengths - 1]  # (tokens, 2 * hidden)
        for token, vector in zip(tokens, last, strict=True):
            token.set_embedding(self.name, vector)
        return sentences
