"""The biLM with its softmax: forward and backward word-level language models on ELMo.

The biLM (:class:`~flair_elmo_modes.bilm.model.ElmoBiLm`) is reused as is: it puts ``<S>`` and
``</S>`` around each sentence of its input, and ``forward(..., keep_boundaries=True)`` keeps their
positions, which the language models need (the forward LM predicts ``</S>`` from the last word,
the backward LM ``<S>`` from the first word).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.options import ElmoOptions

SOFTMAX_KINDS = ("adaptive", "full")
IGNORE_INDEX = -1  # target of padding positions


class LmLoss(NamedTuple):
    """Summed negative log-likelihoods of one batch and the number of predicted tokens.

    Attributes:
        forward_nll: ``()`` sum over the forward LM's predictions (nats).
        backward_nll: ``()`` sum over the backward LM's predictions (nats).
        count: predictions per direction (words plus one sentence marker per sentence).
    """

    forward_nll: torch.Tensor
    backward_nll: torch.Tensor
    count: int


class Softmax(nn.Module):
    """Word distribution from a ``projection_dim`` vector: full or adaptive softmax.

    Args:
        dim: input size (the biLM's ``projection_dim``).
        vocab_size: number of words; ids must be sorted by decreasing frequency for the
            adaptive softmax.
        kind: ``"full"`` or ``"adaptive"`` (:class:`torch.nn.AdaptiveLogSoftmaxWithLoss`).
        cutoffs: cluster boundaries of the adaptive softmax; those ``>= vocab_size - 1`` are
            dropped, and without any left the softmax is full.
        div_value: the adaptive softmax's size reduction per cluster; halved until the last
            cluster keeps at least one dimension (``dim // div_value ** len(cutoffs) >= 1``).
    """

    def __init__(
        self, dim: int, vocab_size: int, kind: str = "adaptive", cutoffs: tuple[int, ...] = (), div_value: float = 4.0
    ) -> None:
        super().__init__()
        if kind not in SOFTMAX_KINDS:
            raise ValueError(f"softmax must be one of {SOFTMAX_KINDS}, got {kind!r}")
        usable = tuple(c for c in cutoffs if 0 < c < vocab_size - 1)
        if list(usable) != sorted(set(usable)):
            raise ValueError(f"softmax cutoffs must be increasing, got {cutoffs}")
        self.kind = kind if usable else "full"
        self.cutoffs = usable if self.kind == "adaptive" else ()
        self.vocab_size = vocab_size
        if self.kind == "adaptive":
            while div_value > 1.0 and dim // div_value ** len(self.cutoffs) < 1:
                div_value = max(1.0, div_value / 2)
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(dim, vocab_size, list(self.cutoffs), div_value=div_value)
        else:
            self.linear = nn.Linear(dim, vocab_size)

    def nll(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood: ``(n, dim)`` inputs, ``(n,)`` targets -> ``()``."""
        if self.kind == "adaptive":
            return -self.adaptive(inputs, targets).output.sum()
        return nn.functional.cross_entropy(self.linear(inputs), targets, reduction="sum")

    def log_prob(self, inputs: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` -> ``(n, vocab_size)`` log-probabilities of every word."""
        if self.kind == "adaptive":
            return self.adaptive.log_prob(inputs)
        return torch.log_softmax(self.linear(inputs), dim=-1)


class BiLanguageModel(nn.Module):
    """An :class:`ElmoBiLm` with a softmax for each direction (or one shared by both).

    Args:
        options: biLM architecture.
        vocab_size: output words, specials included.
        softmax: ``"adaptive"`` or ``"full"``.
        cutoffs: adaptive softmax clusters (see :class:`Softmax`).
        share_softmax: one softmax for both directions, as bilm-tf does.
        dropout: on the token vectors and on the top layer, during training.
        div_value: the adaptive softmax's size reduction per cluster.
    """

    def __init__(
        self,
        options: ElmoOptions,
        vocab_size: int,
        softmax: str = "adaptive",
        cutoffs: tuple[int, ...] = (),
        share_softmax: bool = True,
        dropout: float = 0.1,
        div_value: float = 4.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.bilm = ElmoBiLm(options)
        self.dropout = nn.Dropout(dropout)
        dim = options.projection_dim
        self.share_softmax = share_softmax
        self.forward_softmax = Softmax(dim, vocab_size, softmax, cutoffs, div_value)
        self._backward_softmax = None if share_softmax else Softmax(dim, vocab_size, softmax, cutoffs, div_value)

    @property
    def backward_softmax(self) -> Softmax:
        """The backward LM's softmax (the forward one when shared)."""
        return self.forward_softmax if self._backward_softmax is None else self._backward_softmax

    def forward(self, char_ids: torch.Tensor, targets: torch.Tensor) -> LmLoss:
        """Negative log-likelihood of both language models on a batch.

        Args:
            char_ids: ``(batch, timesteps, max_chars)`` character ids of the words ``w_1 .. w_n``,
                without sentence markers (the biLM adds them), rows of zeros after each sentence.
            targets: ``(batch, timesteps + 2)`` word ids of ``<S> w_1 .. w_n </S>``, ``-1`` after the end.

        Returns:
            Summed NLLs of both directions and the count of predictions per direction. The
            forward LM predicts position ``t + 1`` from its output at ``t`` (``w_1 .. w_n </S>``),
            the backward LM position ``t - 1`` from its output at ``t`` (``<S> w_1 .. w_n``).
        """
        output = self.bilm(char_ids, keep_boundaries=True, token_dropout=self.dropout)
        top = self.dropout(output.layers[-1])  # (batch, timesteps + 2, 2 * proj): <S> w_1 .. w_n </S>, then zeros
        dim = self.bilm.options.projection_dim
        valid = targets[:, 1:] != IGNORE_INDEX  # (batch, timesteps + 1): the pairs (t, t + 1) inside a sentence
        forward_in = top[:, :-1, :dim][valid]  # (n, proj): outputs at t
        backward_in = top[:, 1:, dim:][valid]  # (n, proj): outputs at t + 1
        forward_nll = self.forward_softmax.nll(forward_in, targets[:, 1:][valid])
        backward_nll = self.backward_softmax.nll(backward_in, targets[:, :-1][valid])
        return LmLoss(forward_nll, backward_nll, int(valid.sum()))
