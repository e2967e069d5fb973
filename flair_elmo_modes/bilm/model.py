"""The ELMo biLM: character ids in, all L + 1 layers out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from flair_elmo_modes.bilm.char_encoder import CharacterEncoder
from flair_elmo_modes.bilm.characters import BEGIN_OF_SENTENCE, END_OF_SENTENCE, batch_to_ids, marker_ids
from flair_elmo_modes.bilm.fast.derived import track_parameters
from flair_elmo_modes.bilm.lexicons import BOS, EOS, Lexicons
from flair_elmo_modes.bilm.lstm import BidirectionalLstm, LstmState
from flair_elmo_modes.bilm.options import ElmoOptions


class BiLmOutput(NamedTuple):
    """What :class:`ElmoBiLm` returns.

    Attributes:
        layers: ``(n_layers + 1, batch, timesteps, 2 * projection_dim)``. Layer 0 is the
            character encoding repeated for both directions, layers 1.. are
            ``[forward; backward]`` LSTM outputs. Zero after each sentence's end.
        mask: ``(batch, timesteps)`` bool, True at real tokens.
        state: the LSTM state after each sentence (see :class:`LstmState`).
    """

    layers: torch.Tensor
    mask: torch.Tensor
    state: LstmState


class ElmoBiLm(nn.Module):
    """ELMo's bidirectional language model without its softmax.

    Built from :class:`ElmoOptions` with freshly initialised weights; load published weights
    with :func:`flair_elmo_modes.bilm.hdf5.load_bilm` (AllenNLP's files) or
    :func:`flair_elmo_modes.bilm.manylangs.load_manylangs` (an ELMoForManyLangs directory).
    Stateless: each call starts from ``state`` (zeros by default) and returns the final state
    instead of keeping it.

    Args:
        options: the architecture.
        lexicons: an ELMoForManyLangs model's character (and word) lexicons, which then turn
            tokens into ids (:meth:`token_ids`); None for AllenNLP's UTF-8 byte ids.
    """

    def __init__(self, options: ElmoOptions, lexicons: Lexicons | None = None) -> None:
        super().__init__()
        self.options = options
        self.lexicons = lexicons
        self.char_encoder = CharacterEncoder(options, lexicons)
        self.lstm = BidirectionalLstm(options)
        max_chars = options.max_characters_per_token
        if lexicons is None:
            bos, eos = marker_ids(BEGIN_OF_SENTENCE, max_chars), marker_ids(END_OF_SENTENCE, max_chars)
        else:
            bos, eos = lexicons.marker_ids(BOS, max_chars), lexicons.marker_ids(EOS, max_chars)
        self.register_buffer("bos_ids", torch.tensor(bos), persistent=False)
        self.register_buffer("eos_ids", torch.tensor(eos), persistent=False)
        track_parameters(self)  # so that caches see writes through `.data` (see bilm/fast/derived.py)

    @property
    def input_width(self) -> int:
        """Ids per token: ``max_characters_per_token``, plus a word id with a word lexicon."""
        max_chars = self.options.max_characters_per_token
        return max_chars if self.lexicons is None else self.lexicons.row_width(max_chars)

    def token_ids(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """``(batch, timesteps, input_width)`` int64 ids of tokenized sentences (on the CPU), the
        input of :meth:`forward`; rows of zeros pad shorter sentences."""
        max_chars = self.options.max_characters_per_token
        if self.lexicons is None:
            return batch_to_ids(sentences, max_chars)
        return self.lexicons.batch_to_ids(sentences, max_chars)

    def clear_caches(self) -> None:
        """Drop every value derived from the weights (they are rebuilt when next needed).

        Needed only after writes that bypass PyTorch (e.g. through a numpy view of a weight);
        every other change is detected (see :mod:`flair_elmo_modes.bilm.fast.derived`).
        """
        self.lstm.derived.clear()
        self.char_encoder.clear_caches()  # its packed copies (highway included) and the token cache

    def forward(
        self,
        char_ids: torch.Tensor,
        state: LstmState | None = None,
        keep_boundaries: bool = False,
        token_dropout: nn.Module | None = None,
    ) -> BiLmOutput:
        """Run the biLM on a batch of sentences.

        Args:
            char_ids: ``(batch, timesteps, input_width)`` ids from :meth:`token_ids`, without
                sentence markers; rows of zeros pad shorter sentences.
            state: initial LSTM state, rows in batch order; zeros when ``None``.
            keep_boundaries: keep the ``<S>`` and ``</S>`` positions (as language model training
                needs them).
            token_dropout: applied to the token vectors before the LSTM (training).

        Returns:
            All layers, the mask and the final state. Without boundaries: ``(n_layers + 1, batch,
            timesteps, dim)`` layers of the real tokens and a ``(batch, timesteps)`` mask. With:
            ``(n_layers + 1, batch, timesteps + 2, dim)``, row i holding ``<S> w_1 .. w_n </S>``
            then zeros, and a ``(batch, timesteps + 2)`` mask of those positions.
        """
        if char_ids.dim() != 3 or char_ids.shape[-1] != self.input_width:
            raise ValueError(
                f"ElmoBiLm expects character ids of shape (batch, timesteps, {self.input_width}), "
                f"got {tuple(char_ids.shape)}"
            )
        mask = (char_ids > 0).any(dim=-1)  # (batch, timesteps)
        lengths = mask.sum(dim=-1)
        with_markers = self._add_sentence_markers(char_ids, lengths)  # (batch, timesteps + 2, max_chars)
        tokens = self.char_encoder(with_markers)  # (batch, timesteps + 2, proj)
        lstm_in = tokens if token_dropout is None else token_dropout(tokens)
        lstm_out, final_state = self.lstm(lstm_in, lengths + 2, state)  # (n_layers, batch, timesteps + 2, 2 * proj)
        token_layer = torch.cat([tokens, tokens], dim=-1).unsqueeze(0)  # (1, batch, timesteps + 2, 2 * proj)
        layers = torch.cat([token_layer, lstm_out], dim=0)
        if keep_boundaries:
            positions = torch.arange(layers.shape[2], device=lengths.device)
            mask = positions.unsqueeze(0) < (lengths + 2).unsqueeze(1)  # (batch, timesteps + 2)
        else:
            layers = layers[:, :, 1:-1]  # drop <S> and the last slot
        layers = layers * mask.unsqueeze(-1).to(layers.dtype)  # zero out what follows each sentence
        return BiLmOutput(layers, mask, final_state)

    def _add_sentence_markers(self, char_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Put ``<S>`` before and ``</S>`` after each sentence: ``(batch, timesteps + 2, width)``."""
        batch, timesteps, width = char_ids.shape
        framed = char_ids.new_zeros(batch, timesteps + 2, width)
        framed[:, 1 : timesteps + 1] = char_ids
        framed[:, 0] = self.bos_ids
        framed[torch.arange(batch, device=char_ids.device), lengths + 1] = self.eos_ids
        return framed
