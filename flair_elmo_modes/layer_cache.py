"""A cache of biLM layers per sentence, for a frozen biLM.

With a frozen biLM the layers of a sentence never change, so a tagger that trains for many
epochs (or several taggers over the same corpus) need not run the biLM again: only the cheap
layer mode (for ``"mix"``, the trainable weighting) is applied each time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import torch

from flair_elmo_modes.bilm.fast.derived import weights_key
from flair_elmo_modes.bilm.model import ElmoBiLm


class LayerCache:
    """Least-recently-used layers of up to ``max_sentences`` sentences, keyed by token texts.

    Entries hold ``(num_layers, n_tokens, dim)`` detached tensors; the whole cache is dropped
    when any weight of the biLM may have changed (the cache policy of
    :mod:`flair_elmo_modes.bilm.fast.derived`), and by :meth:`clear`.
    """

    def __init__(self, max_sentences: int) -> None:
        if max_sentences < 0:
            raise ValueError(f"layer cache size must be >= 0, got {max_sentences}")
        self.max_sentences = max_sentences
        self._entries: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()
        self._key: tuple[Hashable, ...] = ()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def validate(self, bilm: ElmoBiLm) -> None:
        """Drop every entry if the biLM changed since they were stored."""
        key = weights_key(bilm.parameters())
        if key != self._key:
            self._entries.clear()
            self._key = key

    def clear(self) -> None:
        self._entries.clear()
        self._key = ()

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
