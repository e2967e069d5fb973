"""``ElmoEmbedder``: the numpy API of allennlp 0.9's ``allennlp.commands.elmo.ElmoEmbedder``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch

from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.hdf5_output import DEFAULT_BATCH_SIZE
from flair_elmo_modes.models import ModelSpec, load_model
from flair_elmo_modes.runner import BiLmRunner, as_token_lists, length_batches, length_sorted_windows

__all__ = ["DEFAULT_BATCH_SIZE", "ElmoEmbedder", "length_batches"]

OUTPUT_FORMATS = ("all", "top", "average")


class ElmoEmbedder:
    """All biLM layers of tokenized sentences as float32 numpy arrays.

    Args:
        options_file: path or URL of an official ``options.json``, or alone a model name
            (``"original"``, ``"small"``, ``"en-tiny"``, ...) or directory (AllenNLP's or an
            ELMoForManyLangs model's); neither file: allennlp 0.9's default model (see
            :meth:`~flair_elmo_modes.models.ModelSpec.from_allennlp_arguments`).
        weight_file: path or URL of the matching ``weights.hdf5``.
        cuda_device: GPU index, or -1 for the CPU (allennlp's convention).
        stateful: carry the LSTM state of each batch row from one call to the next, as
            AllenNLP does (vectors then depend on earlier batches). The default starts every
            sentence from zero state, so its vectors never depend on its batch.
        bilm: an already built biLM to use instead of the two files.
        format: ``"allennlp"`` or ``"manylangs"``: read the directory ``options_file`` as that
            format only (by default told by its files).
        precision: of the biLM's products: ``"fp32"`` (default), ``"bf16"`` (about 2x faster for
            "original" on CPUs with avx512_bf16 or amx_bf16, and GPUs; slower elsewhere, with a
            warning), ``"fp16"`` (CUDA only). The arrays are float32 in every precision; see the
            README for bf16's error.

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
        format: str | None = None,
        precision: str = "fp32",
    ) -> None:
        if bilm is None:
            bilm = load_model(ModelSpec.from_allennlp_arguments(options_file, weight_file, format).resolve())
        device = torch.device("cpu") if cuda_device < 0 else torch.device("cuda", cuda_device)
        self.bilm = bilm.to(device).eval()
        for parameter in self.bilm.parameters():
            parameter.requires_grad_(False)
        self.device = device
        self.stateful = stateful
        self.runner = BiLmRunner(self.bilm, stateful, precision)
        self.precision = self.runner.precision

    @property
    def num_layers(self) -> int:
        return self.bilm.options.num_output_layers

    @property
    def dim(self) -> int:
        return self.bilm.options.output_dim

    def reset_states(self) -> None:
        """Forget the carried LSTM state (only meaningful with ``stateful=True``)."""
        self.runner.reset_states()

    def cache_tokens(self, tokens: Iterable[str] | None) -> int:
        """Compute the character-CNN vectors of a vocabulary once, instead of in every batch.

        allennlp's ``vocab_to_cache``; the vectors of every sentence stay the same. Returns the
        number of distinct tokens cached; ``None`` drops the cache.
        """
        if tokens is None:
            self.bilm.char_encoder.cache_tokens(None)
            return 0
        words = as_token_lists([list(tokens)])[0]
        char_ids = self.bilm.token_ids([[word] for word in words])
        self.bilm.char_encoder.cache_tokens(char_ids[:, 0])  # (n_tokens, max_chars)
        token_cache = self.bilm.char_encoder.token_cache
        return 0 if token_cache is None else len(token_cache)

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

    def embed_file(
        self,
        input_file: IO[str] | str | Path,
        output_file_path: str | Path,
        output_format: str = "all",
        batch_size: int = DEFAULT_BATCH_SIZE,
        forget_sentences: bool = False,
        use_sentence_keys: bool = False,
    ) -> None:
        """Embed a file with one whitespace-tokenized sentence per line into an HDF5 file, as allennlp 0.9.

        The layout of ``flair-elmo embed`` (see :mod:`flair_elmo_modes.hdf5_output`, which writes
        both): one float32 dataset per line named by its 0-based index, and the JSON
        ``sentence_to_index``. Written atomically: on any error an existing file is kept as it
        was. Unlike allennlp, ``input_file`` is not closed here, and sentences are batched by
        length within windows (not with ``stateful=True``); the vectors do not change.

        Args:
            input_file: an open text file (allennlp's ``IO``) or a path (UTF-8).
            output_file_path: the HDF5 file to write.
            output_format: ``"all"`` ``(L + 1, T, D)``, ``"top"`` or ``"average"`` ``(T, D)``.
            batch_size: sentences per biLM call.
            forget_sentences: do not write ``sentence_to_index``.
            use_sentence_keys: name each dataset by its sentence (which must be distinct and
                contain no ``/``); no ``sentence_to_index``.

        Raises:
            ValueError: a bad ``output_format`` or ``batch_size``;
                :class:`~flair_elmo_modes.hdf5_output.EmbedInputError` (a ``ValueError``) for
                empty lines or sentences unfit to be keys, as allennlp's ``ConfigurationError``.
            WriteError: the output could not be written (disk full); names the file.
        """
        from flair_elmo_modes.hdf5_output import DEFAULT_SORT_BATCHES, EmbedInputError, input_problems, write_embeddings
        from flair_elmo_modes.layers import parse_mode
        from flair_elmo_modes.text import read_lines, text_lines

        if output_format not in OUTPUT_FORMATS:
            raise ValueError(f"output_format must be one of {OUTPUT_FORMATS}, got {output_format!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(input_file, (str, os.PathLike)):
            name = str(input_file)
            with open(input_file, "rb") as handle:  # the CLI's reader: bad UTF-8 names line and column
                lines = list(read_lines(handle, name))
        else:
            name = str(getattr(input_file, "name", "input_file"))
            lines = list(text_lines(input_file))  # a byte order mark dropped, as the CLI drops it
        _, problems = input_problems(lines, use_sentence_keys)
        if problems:
            raise EmbedInputError(f"{name}: " + "; ".join(problems))
        write_embeddings(
            output_file_path,
            lines,
            self.runner,
            parse_mode(output_format, self.num_layers),
            batch_size=batch_size,
            sort_batches=1 if self.stateful else DEFAULT_SORT_BATCHES,
            use_sentence_keys=use_sentence_keys,
            forget_sentences=forget_sentences,
            expected_lines=len(lines),
        )

    def _empty(self) -> np.ndarray:
        return np.zeros((self.num_layers, 0, self.dim), dtype=np.float32)
