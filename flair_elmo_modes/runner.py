"""The one way from tokens to biLM layers, shared by ``ElmoEmbedder``, ``ELMoEmbeddings`` and the CLI.

Tokens -> character ids -> the biLM's device -> (carried state) -> biLM -> layers and mask.
Also the one batching window: :func:`length_sorted_windows`. No Flair here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TypeVar

import torch

from flair_elmo_modes.bilm.model import BiLmOutput, ElmoBiLm
from flair_elmo_modes.bilm.precision import Precision, check_precision, computing_in
from flair_elmo_modes.bilm.state import CarriedState

T = TypeVar("T")


def as_token_lists(batch: Iterable[Iterable[str]]) -> list[list[str]]:
    """A batch of tokenized sentences (lists, tuples, numpy arrays of ``str``) as lists of ``str``.

    Raises:
        TypeError: the batch or a sentence is a string or bytes (not split into tokens) or not
            iterable, or a token is not a ``str`` (``None``, a number, bytes).
    """
    if isinstance(batch, (str, bytes)):
        raise TypeError(f"expected a batch of tokenized sentences, got the {type(batch).__name__} {batch[:40]!r}")
    try:
        sentences_in = iter(batch)
    except TypeError:
        raise TypeError(f"expected a batch of tokenized sentences, got {type(batch).__name__} {batch!r}") from None
    sentences = []
    for i, sentence in enumerate(sentences_in):
        if isinstance(sentence, (str, bytes)):
            raise TypeError(
                f"sentence {i} is the {type(sentence).__name__} {sentence[:40]!r}; "
                "expected a sequence of str tokens (e.g. text.split())"
            )
        try:
            tokens = list(sentence)
        except TypeError:
            raise TypeError(
                f"sentence {i} is {type(sentence).__name__} {sentence!r}; expected a sequence of str tokens"
            ) from None
        # By position, not by value: a None token must not pass as "no bad token found".
        position = next((j for j, token in enumerate(tokens) if not isinstance(token, str)), None)
        if position is not None:
            bad = tokens[position]
            raise TypeError(f"sentence {i}, token {position}: tokens must be str, got {type(bad).__name__} {bad!r}")
        sentences.append([str(token) for token in tokens])  # numpy.str_ -> str
    return sentences


class BiLmRunner:
    """Runs a biLM on token lists.

    Args:
        bilm: the biLM (its device is the device of its parameters).
        stateful: carry each batch row's LSTM state to the next call, as AllenNLP does; by
            default every sentence starts from zero state.
        precision: of the biLM's inference products (see :mod:`flair_elmo_modes.bilm.precision`):
            ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` (CUDA). Layers are float32 in each.

    Raises:
        ValueError: a precision the biLM's device cannot serve (see ``check_precision``).
    """

    def __init__(self, bilm: ElmoBiLm, stateful: bool = False, precision: str = "fp32") -> None:
        self.bilm = bilm
        self.stateful = stateful
        self.precision: Precision = check_precision(precision, self.device)
        self._carried = CarriedState()

    def reset_states(self) -> None:
        """Forget the carried LSTM state (``stateful=True`` only)."""
        self._carried.reset()

    @property
    def device(self) -> torch.device:
        return self.bilm.bos_ids.device

    def run(self, sentences: Sequence[Sequence[str]], grad: bool = False) -> BiLmOutput:
        """Layers of a batch.

        Args:
            sentences: tokenized sentences (see :func:`as_token_lists`).
            grad: let autograd see the biLM (fine-tuning). Otherwise it runs under ``no_grad``
                (not ``inference_mode``: a trainable layer mix must be able to save the layers).

        Returns:
            ``(n_layers + 1, batch, timesteps, dim)`` layers, the ``(batch, timesteps)`` mask and
            the final state (see :class:`~flair_elmo_modes.bilm.model.BiLmOutput`).
        """
        return self.run_ids(self.bilm.token_ids(as_token_lists(sentences)), grad)

    def run_ids(self, char_ids: torch.Tensor, grad: bool = False, keep_boundaries: bool = False) -> BiLmOutput:
        """Layers of a batch given as ids, as :meth:`run` (AllenNLP's ``Elmo`` takes ids).

        Args:
            char_ids: ``(batch, timesteps, input_width)`` ids from ``bilm.token_ids`` (or
                AllenNLP's ``batch_to_ids``), without sentence markers, on any device.
            grad: as in :meth:`run`.
            keep_boundaries: keep the ``<S>`` and ``</S>`` positions (see ``ElmoBiLm.forward``).
        """
        if self.precision != "fp32":
            check_precision(self.precision, self.device)  # the biLM may have moved since
        char_ids = char_ids.to(self.device)
        initial = self._carried.initial(char_ids.shape[0]) if self.stateful else None
        if grad and torch.is_grad_enabled():
            output = self.bilm(char_ids, initial, keep_boundaries)  # autograd computes in the weights' dtype
        else:
            with torch.no_grad(), computing_in(self.precision):
                output = self.bilm(char_ids, initial, keep_boundaries)
        if self.stateful:
            self._carried.update(output.state)
        return output


def length_sorted_windows(
    items: Iterable[T], lengths: Callable[[T], int], batch_size: int, sort_batches: int
) -> Iterator[tuple[list[T], list[list[int]]]]:
    """Read ``items`` lazily in windows of ``batch_size * sort_batches`` and batch each window.

    Yields:
        Each window and its batches as lists of row indices into it: sorted by length (stable)
        when ``sort_batches > 1``, in order otherwise.

    Raises:
        ValueError: ``batch_size`` or ``sort_batches`` below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if sort_batches < 1:
        raise ValueError(f"sort_batches must be >= 1, got {sort_batches}")
    iterator = iter(items)
    window_size = min(batch_size * sort_batches, sys.maxsize)  # islice's limit
    while window := list(islice(iterator, window_size)):
        yield window, length_batches([lengths(item) for item in window], batch_size, sort_batches > 1)


def length_batches(lengths: Sequence[int], batch_size: int, by_length: bool = True) -> list[list[int]]:
    """Indices of ``lengths`` cut into batches of ``batch_size``: sorted by length (stable) when
    ``by_length``, else in order."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__) if by_length else list(range(len(lengths)))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
