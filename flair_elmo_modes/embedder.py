"""``ElmoEmbedder``: the numpy API of allennlp 0.9's ``allennlp.commands.elmo.ElmoEmbedder``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from flair_elmo_modes.bilm.hdf5 import load_bilm
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.runner import BiLmRunner, as_token_lists, length_batches, length_sorted_windows

__all__ = ["DEFAULT_BATCH_SIZE", "ElmoEmbedder", "length_batches"]

DEFAULT_BATCH_SIZE = 64


class ElmoEmbedder:
    """All biLM layers of tokenized sentences as float32 numpy arrays.

    Args:
        options_file: path to an official ``options.json``.
        weight_file: path to the matching ``weights.hdf5``.
        cuda_device: GPU index, or -1 for the CPU (allennlp's convention).
        stateful: carry the LSTM state of each batch row from one call to the next, as
            AllenNLP does (vectors then depend on earlier batches). The default starts every
            sentence from zero state, so its vectors never depend on its batch.
        bilm: an already built biLM to use instead of the two files.

    Every array has shape ``(n_layers + 1, n_tokens, 2 * projection_dim)``: layer 0 is the
    character encoding repeated for both directions, the others ``[forward; backward]``.

    Empty token strings are valid tokens: they encode as a word with no characters.
    """

    def __init__(
        self,
        options_file: str | Path | None = None,
        weight_file: str | Path | None = None,
        cuda_device: int = -1,
        stateful: bool = False,
        bilm: ElmoBiLm | None = None,
    ) -> None:
        if bilm is None:
            if options_file is None or weight_file is None:
                raise ValueError("ElmoEmbedder needs options_file and weight_file (or a bilm)")
            bilm = load_bilm(options_file, weight_file)
        device = torch.device("cpu") if cuda_device < 0 else torch.device("cuda", cuda_device)
        self.bilm = bilm.to(device).eval()
        for parameter in self.bilm.parameters():
            parameter.requires_grad_(False)
        self.device = device
        self.stateful = stateful
        self.runner = BiLmRunner(self.bilm, stateful)

    @property
    def num_layers(self) -> int:
        return self.bilm.options.num_output_layers

    @property
    def dim(self) -> int:
        return self.bilm.options.output_dim

    def reset_states(self) -> None:
        """Forget the carried LSTM state (only meaningful with ``stateful=True``)."""
        self.runner.reset_states()

    def batch_to_embeddings(self, batch: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers and mask of a batch.

        Returns:
            ``(batch, n_layers + 1, timesteps, 2 * projection_dim)`` activations (allennlp's
            layout) and the ``(batch, timesteps)`` bool mask.
        """
        output = self.runner.run(batch)
        return output.layers.transpose(0, 1), output.mask

    def embed_sentence(self, sentence: Sequence[str]) -> np.ndarray:
        """``(n_layers + 1, n_tokens, 2 * projection_dim)`` float32 for one tokenized sentence."""
        return self.embed_batch([sentence])[0]

    def embed_batch(self, batch: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """One array per sentence, as :meth:`embed_sentence`; an empty sentence gives 0 tokens."""
        batch = as_token_lists(batch)
        if not batch:
            return []
        if all(len(sentence) == 0 for sentence in batch):
            return [self._empty() for _ in batch]
        layers, mask = self.batch_to_embeddings(batch)
        layers = layers.float().cpu().numpy()
        lengths = mask.sum(dim=-1).tolist()
        return [layers[i, :, :length] for i, length in enumerate(lengths)]

    def embed_sentences(
        self, sentences: Iterable[Sequence[str]], batch_size: int = DEFAULT_BATCH_SIZE, sort_batches: int = 1
    ) -> Iterator[np.ndarray]:
        """Embed a stream of sentences, ``batch_size`` at a time, yielding arrays in input order.

        Args:
            sentences: tokenized sentences, read lazily.
            batch_size: sentences per batch.
            sort_batches: length-aware batching: read ``sort_batches * batch_size`` sentences, batch
                them by length (fewer LSTM steps that run only a few rows) and yield their arrays
                in input order. Up to that many arrays are held at once. The vectors do not change
                (see the README's Determinism section); needs ``stateful=False``. 1 (the default,
                allennlp's behaviour) batches sentences as they come.
        """
        if sort_batches > 1 and self.stateful:
            raise ValueError("sort_batches > 1 reorders sentences across batch rows; it needs stateful=False")
        for window, batches in length_sorted_windows(sentences, len, batch_size, sort_batches):
            arrays: list[np.ndarray] = [self._empty()] * len(window)
            for rows in batches:
                for row, array in zip(rows, self.embed_batch([window[i] for i in rows]), strict=True):
                    arrays[row] = array
            yield from arrays

    def _empty(self) -> np.ndarray:
        return np.zeros((self.num_layers, 0, self.dim), dtype=np.float32)
