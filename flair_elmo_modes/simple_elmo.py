"""``ElmoModel``: the API of ``simple_elmo`` 0.9.2 (NLPL's TensorFlow ELMo), on this library's biLM.

One import line changes::

    from simple_elmo import ElmoModel              # before
    from flair_elmo_modes.simple_elmo import ElmoModel  # after

    model = ElmoModel()
    model.load("209.zip")  # an NLPL archive or directory: options.json, model.hdf5, vocab.txt
    vectors = model.get_elmo_vectors([["Москва", "—", "столица", "."]], layers="average")  # (1, 4, 1024)

A model is whatever :meth:`~flair_elmo_modes.models.ModelSpec.parse` takes: NLPL's directories
and ``.zip`` archives (unpacked once into flair's cache), AllenNLP's files, names such as
``"small"``, ELMoForManyLangs directories. The vectors are those of
:class:`~flair_elmo_modes.embedder.ElmoEmbedder`. No Flair, no TensorFlow here.

What differs from ``simple_elmo`` 0.9.2:

- Stateless. bilm-tf's graph keeps each batch row's LSTM state in variables and starts every
  batch from the state the batch before left; ``get_elmo_vectors`` first runs a warm-up batch
  (``warmup=True``) so that its vectors start from that state. Ours start every sentence from
  zero state, so ``warmup`` changes nothing and the vectors do not depend on the other sentences
  or on earlier calls: they equal theirs with the state reset before every batch (to float32
  rounding, ``tests/test_simple_elmo_api.py``).
- Zeros past each sentence's end. Inside a batch theirs hold there the character CNN's vector
  of the padding in layer 0 (a third of it in ``"average"``), so a padded row depends on the
  batch; ``get_elmo_vector_average`` averages over the batch's longest length, padding
  included, and for ``layers="all"`` reshapes ``(layers, tokens)`` to ``(tokens, layers)``
  without a transpose, mixing layers. Ours average each sentence's own tokens, per layer.
  An empty sentence averages to a zero vector (theirs: NaN once a batch has only empty ones).
- ``limit`` (how many ``vocab.txt`` words theirs cache as character ids) and ``session`` (a
  TensorFlow session) are accepted and unused; no vocabulary is needed. ``full=True`` (their
  TensorFlow checkpoints for ``get_elmo_substitutes``) is not supported.
- ``n_characters: 261`` (bilm-tf's training value) is read as 262 instead of refused; a directory
  without ``model.hdf5`` needs ``weights.hdf5`` or one ``*weights*.hdf5`` (theirs take any
  ``*.hdf5``); a missing model is an exception, not ``SystemExit``; nothing configures logging.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.runner import as_token_lists

__all__ = ["LAYERS", "ElmoModel"]

#: ``layers`` values of ``get_elmo_vectors`` / ``get_elmo_vector_average``.
LAYERS = ("average", "top", "all")


class ElmoModel:
    """ELMo vectors as ``simple_elmo.ElmoModel`` gives them: zero-padded float64 arrays.

    Attributes (set by :meth:`load`, ``None`` before, as theirs):
        batch_size: sentences per biLM call (``max_batch_size``).
        max_chars: the model's ``max_characters_per_token``.
        vector_size: the length of one layer's vector, ``2 * projection_dim``.
        n_layers: output layers, the token layer included (``lstm.n_layers + 1``).
        embedder: the :class:`~flair_elmo_modes.embedder.ElmoEmbedder` that computes the layers.
    """

    def __init__(self) -> None:
        self.batch_size: int | None = None
        self.max_chars: int | None = None
        self.vector_size: int | None = None
        self.n_layers: int | None = None
        self.embedder: ElmoEmbedder | None = None

    def load(
        self,
        directory: str | Path,
        max_batch_size: int = 32,
        limit: int = 100,
        full: bool = False,
        cuda_device: int | None = None,
    ) -> str:
        """Load a model.

        Args:
            directory: an NLPL model directory or ``.zip`` (``options.json``, ``model.hdf5``,
                maybe ``vocab.txt``), or any model ``ModelSpec.parse`` takes.
            max_batch_size: sentences per biLM call (theirs: the most a batch may hold).
            limit: unused (theirs: how many vocabulary words to cache).
            full: must be False: TensorFlow checkpoints are not read here.
            cuda_device: GPU index, or -1 for the CPU; None, the default, the first GPU when torch
                sees one (as TensorFlow takes one), else the CPU.

        Returns:
            Their message, ``"The model is now loaded."``.

        Raises:
            ValueError: ``full=True``, a bad ``max_batch_size``, or an unknown model name.
            FileNotFoundError: the directory or archive holds no model (the message lists the
                files looked for).
            ElmoFileError: a damaged file (names it).
        """
        if full:
            raise ValueError(
                "full=True loads simple_elmo's TensorFlow checkpoints (for get_elmo_substitutes); "
                "not supported here: load the model.hdf5 directory or archive with full=False"
            )
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, (int, np.integer)) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be a positive int, got {max_batch_size!r}")
        if cuda_device is None:
            cuda_device = 0 if torch.cuda.is_available() else -1
        embedder = ElmoEmbedder(str(directory), cuda_device=cuda_device)
        options = embedder.bilm.options
        self.embedder = embedder
        self.batch_size = int(max_batch_size)
        self.max_chars = options.max_characters_per_token
        self.vector_size = options.output_dim
        self.n_layers = options.num_output_layers
        return "The model is now loaded."

    def get_elmo_vectors(
        self, texts: Sequence[Sequence[str]], warmup: bool = True, layers: str = "average", session: Any = None
    ) -> np.ndarray:
        """ELMo vectors of tokenized sentences, zero-padded to the longest.

        Args:
            texts: tokenized sentences (lists of ``str``).
            warmup: unused: there is no state to warm up (see the module docstring).
            layers: ``"average"`` (the mean of all layers), ``"top"`` (the last LSTM layer) or
                ``"all"``.
            session: unused (theirs: a TensorFlow session).

        Returns:
            float64 ``(n_texts, max_len, vector_size)``, or ``(n_texts, n_layers, max_len,
            vector_size)`` for ``"all"`` (layer 0 the token layer, then the LSTM layers);
            zeros past each sentence's end.

        Raises:
            ValueError: ``layers`` is not one of :data:`LAYERS`; no model loaded.
            TypeError: a text is a string, or a token is not a ``str``.
        """
        _check_layers(layers)
        sentences = as_token_lists(texts)
        longest = max((len(sentence) for sentence in sentences), default=0)
        n_layers, dim = self._shape()
        shape = (len(sentences), n_layers, longest, dim) if layers == "all" else (len(sentences), longest, dim)
        vectors = np.zeros(shape)  # float64, as theirs
        for i, sentence_layers in enumerate(self._layers(sentences)):  # (n_layers, n_tokens, dim) float32
            n_tokens = sentence_layers.shape[1]
            if layers == "all":
                vectors[i, :, :n_tokens] = sentence_layers
            else:
                vectors[i, :n_tokens] = _selected(sentence_layers, layers)
        return vectors

    def get_elmo_vector_average(
        self, texts: Sequence[Sequence[str]], warmup: bool = True, layers: str = "average", session: Any = None
    ) -> np.ndarray:
        """One unit-length vector per sentence: the mean of its tokens' vectors, divided by its norm.

        Args:
            texts, warmup, layers, session: as :meth:`get_elmo_vectors`.

        Returns:
            float64 ``(n_texts, vector_size)``, or ``(n_texts, n_layers, vector_size)`` for
            ``"all"`` (each layer's mean over the tokens, the whole matrix divided by its
            Frobenius norm, as theirs). A sentence without tokens gives zeros.
        """
        _check_layers(layers)
        sentences = as_token_lists(texts)
        n_layers, dim = self._shape()
        averages = np.zeros((len(sentences), n_layers, dim) if layers == "all" else (len(sentences), dim))
        for i, sentence_layers in enumerate(self._layers(sentences)):
            if sentence_layers.shape[1] == 0:
                continue  # no tokens: no direction
            chosen = sentence_layers if layers == "all" else _selected(sentence_layers, layers)
            mean = chosen.mean(axis=-2, dtype=np.float64)  # over the tokens: (dim,) or (n_layers, dim)
            norm = np.linalg.norm(mean)
            averages[i] = mean / norm if norm > 0 else mean
        return averages

    def _shape(self) -> tuple[int, int]:
        if self.n_layers is None or self.vector_size is None:
            raise ValueError("no model loaded: call load(directory) first")
        return self.n_layers, self.vector_size

    def _layers(self, sentences: list[list[str]]) -> Iterator[np.ndarray]:
        """Each sentence's ``(n_layers, n_tokens, vector_size)`` float32 layers, in input order."""
        if self.embedder is None or self.batch_size is None:
            raise ValueError("no model loaded: call load(directory) first")
        # One window over all sentences, batched by length (fewer padded steps); stateless, so
        # the batches do not change the vectors beyond float32 rounding.
        sort_batches = max(1, -(-len(sentences) // self.batch_size))
        return self.embedder.embed_sentences(sentences, self.batch_size, sort_batches)


def _check_layers(layers: str) -> None:
    if layers not in LAYERS:
        raise ValueError(f"layers must be one of {', '.join(map(repr, LAYERS))}, got {layers!r}")


def _selected(sentence_layers: np.ndarray, layers: str) -> np.ndarray:
    """``"top"`` or ``"average"`` of one sentence's ``(n_layers, n_tokens, dim)`` layers: ``(n_tokens, dim)``."""
    if layers == "top":
        return sentence_layers[-1]
    return sentence_layers.mean(axis=0, dtype=np.float64)  # theirs: softmax of equal weights, gamma 1
