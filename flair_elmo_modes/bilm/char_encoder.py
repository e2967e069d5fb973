"""The character-aware token encoder of ELMo: layer 0 of the biLM."""

from __future__ import annotations

import torch
from torch import nn

from flair_elmo_modes.bilm.options import ElmoOptions


class Highway(nn.Module):
    """Highway layers in AllenNLP's convention.

    Each layer computes ``[transform; gate] = W x + b`` and returns
    ``sigmoid(gate) * x + (1 - sigmoid(gate)) * relu(transform)``. The gate half holds the
    negated bilm-tf carry weights (converted in :mod:`flair_elmo_modes.bilm.hdf5`).
    """

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., dim)`` -> ``(..., dim)``."""
        for layer in self.layers:
            transform, gate = layer(x).chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * torch.relu(transform)
        return x


class CharacterEncoder(nn.Module):
    """Token vectors from character ids: embedding, convolutions, max-pool, highway, projection.

    Every distinct token of a batch is encoded once (the padding token included), so a word
    that occurs many times costs one convolution.
    """

    def __init__(self, options: ElmoOptions) -> None:
        super().__init__()
        self.options = options
        self.char_embedding = nn.Embedding(options.char_embedding_rows, options.char_embedding_dim, padding_idx=0)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.char_embedding_dim, count, kernel_size=width) for width, count in options.filters
        )
        self.highway = Highway(options.n_filters, options.n_highway)
        self.projection = nn.Linear(options.n_filters, options.projection_dim)
        self.activation = torch.tanh if options.activation == "tanh" else torch.relu

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Encode tokens.

        Args:
            char_ids: ``(batch, timesteps, max_chars)`` int64 character ids.

        Returns:
            ``(batch, timesteps, projection_dim)`` token vectors.
        """
        batch, timesteps, max_chars = char_ids.shape
        flat = char_ids.reshape(-1, max_chars)  # (batch * timesteps, max_chars)
        distinct, inverse = torch.unique(flat, dim=0, return_inverse=True)
        encoded = self.encode_distinct(distinct)  # (n_distinct, projection_dim)
        return encoded[inverse].view(batch, timesteps, -1)

    def encode_distinct(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(n_tokens, max_chars)`` ids -> ``(n_tokens, projection_dim)`` vectors, token by token."""
        embedded = self.char_embedding(char_ids).transpose(1, 2)  # (n_tokens, char_dim, max_chars)
        pooled = [conv(embedded).max(dim=-1).values for conv in self.convolutions]  # each (n_tokens, count)
        features = self.activation(torch.cat(pooled, dim=-1))  # (n_tokens, n_filters)
        return self.projection(self.highway(features))
