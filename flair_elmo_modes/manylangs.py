"""``Embedder``: the API of HIT-SCIR's ``elmoformanylangs`` package, on this library's biLM.

One import line changes::

    from elmoformanylangs import Embedder        # before
    from flair_elmo_modes.manylangs import Embedder  # after

    embedder = Embedder("models/zhs.model")
    vectors = embedder.sents2elmo([["今天", "天气", "很", "冷", "。"]])  # [array (5, 1024)]

``sents2elmo`` returns their list of float32 arrays with their ``output_layer`` meanings; the
vectors are those of :class:`~flair_elmo_modes.embedder.ElmoEmbedder` (see the README's
"ELMoForManyLangs models" for what is read and computed). No Flair here.

What differs from ``elmoformanylangs`` 0.0.4:

- Stateless. Their encoder is AllenNLP's stateful ``ElmoLstm``: every batch starts from the LSTM
  state the batch before left, and ``sents2elmo`` shuffles the order of its batches, so their
  vectors depend on earlier calls and on the other sentences. Ours start every sentence from
  zero state: they equal their output for the first batch of a fresh ``Embedder`` (to float32
  rounding, ``tests/test_manylangs_api.py``), whatever the batch and call.
- No sentences give ``[]``, and a batch of only empty sentences zero-token arrays (theirs
  divide by zero). Tokens must be ``str`` (a string where a token list belongs is an error,
  not a list of characters).
- The biLM runs without autograd (theirs builds the graph: no ``torch.no_grad``).
- Their ``"lstm"`` encoder is not supported (no released model uses it); any model
  ``ModelSpec.parse`` takes works too (AllenNLP's files, a name such as ``"small"``, a ``.zip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.runner import as_token_lists

__all__ = ["ALL_LAYERS", "AVERAGE", "Embedder"]

#: ``output_layer`` values with a meaning of their own; others select one layer.
AVERAGE = -1
ALL_LAYERS = -2


class Embedder:
    """ELMo vectors of tokenized sentences, as ``elmoformanylangs.Embedder`` gives them.

    Args:
        model_dir: an ELMoForManyLangs model directory (``config.json``, ``char.dic``,
            ``word.dic``, ``token_embedder.pkl``, ``encoder.pkl``), or any model
            :meth:`~flair_elmo_modes.models.ModelSpec.parse` takes.
        batch_size: sentences per biLM call. Sentences are batched by length as theirs are;
            the vectors do not depend on it (beyond float32 rounding).
        cuda_device: GPU index, or -1 for the CPU. None (the default) is their rule: the first
            GPU when torch sees one, else the CPU.

    Attributes:
        model_dir: ``model_dir`` as given.
        batch_size: ``batch_size`` as given.
        embedder: the :class:`~flair_elmo_modes.embedder.ElmoEmbedder` that computes the layers.
    """

    def __init__(self, model_dir: str | Path, batch_size: int = 64, cuda_device: int | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if cuda_device is None:
            cuda_device = 0 if torch.cuda.is_available() else -1
        self.model_dir = model_dir
        self.batch_size = int(batch_size)
        self.embedder = ElmoEmbedder(str(model_dir), cuda_device=cuda_device)

    @property
    def use_cuda(self) -> bool:
        """Whether the biLM runs on a GPU (their attribute)."""
        return self.embedder.device.type == "cuda"

    def sents2elmo(self, sents: Sequence[Sequence[str]], output_layer: int = AVERAGE) -> list[np.ndarray]:
        """ELMo vectors of each sentence, in input order.

        Args:
            sents: tokenized sentences (lists of ``str``).
            output_layer: ``-1`` the average of all layers, ``(n_tokens, dim)``; ``-2`` all
                layers, ``(n_layers + 1, n_tokens, dim)`` (layer 0 the token layer, then the LSTM
                layers); ``0``, ``1``, ``2`` (or ``-3``, counting from the top as numpy does) one
                layer, ``(n_tokens, dim)``. ``dim`` is ``2 * projection_dim`` (1024 for their models).

        Returns:
            One float32 array per sentence.

        Raises:
            ValueError: ``output_layer`` names no layer of this model (theirs: ``IndexError``).
            TypeError: a sentence is a string, or a token is not a ``str``.
        """
        n_layers = self.embedder.num_layers
        if isinstance(output_layer, bool) or not isinstance(output_layer, (int, np.integer)):
            raise ValueError(f"output_layer must be an int, got {output_layer!r}")
        if output_layer not in (AVERAGE, ALL_LAYERS) and not -n_layers <= output_layer < n_layers:
            raise ValueError(
                f"output_layer {output_layer} names no layer: expected -1 (average), -2 (all layers) "
                f"or a layer index from {-n_layers} to {n_layers - 1}"
            )
        sentences = as_token_lists(sents)
        # One window over all sentences: batches sorted by length, as theirs, arrays in input order.
        sort_batches = max(1, -(-len(sentences) // self.batch_size))
        arrays = self.embedder.embed_sentences(sentences, self.batch_size, sort_batches)
        return [_select(layers, int(output_layer)) for layers in arrays]  # each (n_layers + 1, n_tokens, dim)


def _select(layers: np.ndarray, output_layer: int) -> np.ndarray:
    """Their ``sents2elmo`` choice from one sentence's ``(n_layers + 1, n_tokens, dim)`` layers."""
    if output_layer == AVERAGE:
        # their np.average(layers, axis=0) is this mean, in the layers' dtype; it divides by zero
        # for a sentence without tokens, where the mean is an empty array
        return layers.mean(axis=0)
    if output_layer == ALL_LAYERS:
        return layers
    return layers[output_layer]
