"""A cache of biLM layers per sentence, for a frozen biLM.

With a frozen biLM the layers of a sentence never change, so a tagger that trains for many
epochs (or several taggers over the same corpus) need not run the biLM again: only the cheap
layer mode (for ``"mix"``, the trainable weighting) is applied each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import torch

from flair_elmo_modes.bilm.model import ElmoBiLm


def bilm_fingerprint(bilm: ElmoBiLm) -> Hashable:
    """Changes whenever the biLM's outputs may change: device, dtype, or any weight update.

    ``Tensor._version`` counts in-place writes (optimiser steps, ``load_state_dict``), and
    ``id`` catches replaced parameters.
    """
    parameters = list(bilm.parameters())
    return (
        parameters[0].device,
        parameters[0].dtype,
        tuple((id(p), p._version) for p in parameters),
    )


class LayerCache:
    """Least-recently-used layers of up to ``max_sentences`` sentences, keyed by token texts.

    Entries hold ``(num_layers, n_tokens, dim)`` detached tensors; the whole cache is dropped
    when :func:`bilm_fingerprint` changes.
    """

    def __init__(self, max_sentences: int) -> None:
        if max_sentences < 0:
            raise ValueError(f"layer cache size must be >= 0, got {max_sentences}")
        self.max_sentences = max_sentences
        self._entries: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self._fingerprint: Hashable = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def validate(self, bilm: ElmoBiLm) -> None:
        """Drop every entry if the biLM changed since they were stored."""
        fingerprint = bilm_fingerprint(bilm)
        if fingerprint != self._fingerprint:
            self._entries.clear()
            self._fingerprint = fingerprint

    def get(self, tokens: Sequence[str]) -> torch.Tensor | None:
        entry = self._entries.get(tuple(tokens))
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(tuple(tokens))
        return entry

    def put(self, tokens: Sequence[str], layers: torch.Tensor) -> None:
        if self.max_sentences == 0:
            return
        self._entries[tuple(tokens)] = layers.detach()
        self._entries.move_to_end(tuple(tokens))
        while len(self._entries) > self.max_sentences:
            self._entries.popitem(last=False)
