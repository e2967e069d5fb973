"""The character-aware token encoder of ELMo: layer 0 of the biLM."""

from __future__ import annotations

import torch
from torch import nn

from flair_elmo_modes.bilm import precision
from flair_elmo_modes.bilm.characters import ID_OFFSET, PADDING
from flair_elmo_modes.bilm.fast import fast_paths, onednn
from flair_elmo_modes.bilm.fast.derived import DerivedTensors, apply_and_drop, clear_derived
from flair_elmo_modes.bilm.lexicons import Lexicons
from flair_elmo_modes.bilm.options import ElmoOptions

# The id of the slots after a word's end-of-word marker (AllenNLP's byte ids).
PADDING_ID = PADDING + ID_OFFSET

# Tokens are convolved in groups by their number of real slots (begin-of-word .. end-of-word):
# a group with at most T real slots convolves only the windows that start in the first T slots.
# Most English words have 3..10 real slots (1..8 bytes).
REAL_SLOT_GROUPS = (8, 12, 18, 28)


class Highway(nn.Module):
    """Highway layers in AllenNLP's convention.

    Each layer computes ``[transform; gate] = W x + b`` and returns
    ``sigmoid(gate) * x + (1 - sigmoid(gate)) * relu(transform)``. The gate half holds the
    negated bilm-tf carry weights (converted in :mod:`flair_elmo_modes.bilm.hdf5`).
    """

    def __init__(self, dim: int, n_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(n_layers))
        self.derived = DerivedTensors()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` -> ``(n, dim)``."""
        for k, layer in enumerate(self.layers):
            projected = onednn.packed_linear(self.derived, str(k), x, layer.weight, layer.bias, [layer.weight])
            transform, gate = projected.chunk(2, dim=-1)
            gate = torch.sigmoid(gate)
            x = gate * x + (1 - gate) * torch.relu(transform)
        return x


class CharacterEncoder(nn.Module):
    """Token vectors from character ids: embedding, convolutions, max-pool, highway, projection.

    Args:
        options: the architecture.
        lexicons: an ELMoForManyLangs model's lexicons: then the character ids are theirs (see
            :mod:`~flair_elmo_modes.bilm.lexicons`), and with a word lexicon each token row ends
            with a word id whose embedding is put before the highway output, ``[word; chars]``,
            ahead of the projection (their ``ConvTokenEmbedder``). None: AllenNLP's byte ids.

    Two exact shortcuts keep the arithmetic down:

    - every distinct token of a batch is encoded once (the batch padding token included), so a
      word that occurs many times costs one encoding;
    - a convolution window that lies wholly in the padding after a word's end-of-word marker
      reads the same ``max_chars``-slot padding for every token, so its value is computed once per
      filter; for each token only the windows that start at a real slot are convolved.

    Optionally, :meth:`cache_tokens` keeps the vectors of a vocabulary across batches.

    Attributes:
        real_slot_groups: upper bounds of the groups of tokens convolved together, by number of
            real slots (see ``REAL_SLOT_GROUPS``); ``max_chars`` closes the last group.
    """

    real_slot_groups: tuple[int, ...] = REAL_SLOT_GROUPS

    def __init__(self, options: ElmoOptions, lexicons: Lexicons | None = None) -> None:
        super().__init__()
        self.options = options
        rows = options.char_embedding_rows if lexicons is None else lexicons.char_rows
        self.padding_id = PADDING_ID if lexicons is None else lexicons.padding_id
        self.char_embedding = nn.Embedding(rows, options.char_embedding_dim, padding_idx=0)
        self.convolutions = nn.ModuleList(
            nn.Conv1d(options.char_embedding_dim, count, kernel_size=width) for width, count in options.filters
        )
        self.highway = Highway(options.n_filters, options.n_highway)
        word_dim = 0 if lexicons is None else lexicons.word_dim
        self.word_embedding = None if word_dim == 0 else nn.Embedding(lexicons.word_rows, word_dim, padding_idx=0)
        self.projection = nn.Linear(word_dim + options.n_filters, options.projection_dim)
        self.activation = torch.tanh if options.activation == "tanh" else torch.relu
        self.derived = DerivedTensors()
        self.token_cache: TokenCache | None = None

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        return apply_and_drop(self, lambda: super(CharacterEncoder, self)._apply(fn, recurse), self.clear_caches)

    def clear_caches(self) -> None:
        """Drop the packed weight copies and the token cache's vectors (rebuilt when next needed)."""
        clear_derived(self)
        if self.token_cache is not None:
            self.token_cache.clear()

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Encode tokens.

        Args:
            char_ids: ``(batch, timesteps, width)`` int64 ids: ``max_chars`` character ids, then
                the word id with a word embedding.

        Returns:
            ``(batch, timesteps, projection_dim)`` token vectors.
        """
        batch, timesteps, width = char_ids.shape
        flat = char_ids.reshape(-1, width)  # (batch * timesteps, width)
        if fast_paths.current().allows("distinct_tokens"):
            distinct, inverse = unique_rows(flat)
        else:
            distinct, inverse = flat, torch.arange(len(flat), device=flat.device)
        if self.token_cache is not None and not self._needs_grad():
            encoded = self.token_cache.encode(self, distinct)
        else:
            encoded = self.encode_distinct(distinct)  # (n_distinct, projection_dim)
        return encoded.index_select(0, inverse).view(batch, timesteps, -1)

    def cache_tokens(self, char_ids: torch.Tensor | None) -> None:
        """Keep the vectors of a vocabulary, so that its tokens are not encoded again in each batch.

        Args:
            char_ids: ``(n_tokens, width)`` ids of the tokens to keep (for token strings:
                ``bilm.token_ids([[t] for t in tokens])[:, 0]``), or None to drop the cache.

        The vectors are computed when first needed, and again after any change of a weight, the
        dtype or the device. The cache serves only calls that need no gradient; with autograd
        every token is encoded as usual.
        """
        self.token_cache = None if char_ids is None else TokenCache(char_ids)

    def _needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())

    def encode_distinct(self, char_ids: torch.Tensor) -> torch.Tensor:
        """``(n_tokens, width)`` ids -> ``(n_tokens, projection_dim)`` vectors, token by token."""
        max_chars = self.options.max_characters_per_token
        features = self.highway(self.activation(self.convolve(char_ids[:, :max_chars])))  # (n_tokens, n_filters)
        if self.word_embedding is not None:
            features = torch.cat([self.word_embedding(char_ids[:, max_chars]), features], dim=-1)
        weight, bias = self.projection.weight, self.projection.bias
        return onednn.packed_linear(self.derived, "projection", features, weight, bias, [weight])

    def convolve(self, char_ids: torch.Tensor) -> torch.Tensor:
        """Max-pooled convolutions, before the activation.

        Tokens are grouped by their number of real slots, and each group runs all filters as one
        matrix multiply over the windows that start at a real slot (each filter zero-padded to the
        widest); the windows after them lie wholly in the padding.

        Args:
            char_ids: ``(n_tokens, max_chars)`` ids.

        Returns:
            ``(n_tokens, n_filters)``: for every filter the maximum over all ``max_chars - width + 1``
            windows, as a full convolution gives.
        """
        n_tokens, max_chars = char_ids.shape
        max_width = max(width for width, _ in self.options.filters)
        positions = torch.arange(1, max_chars + 1, device=char_ids.device)
        # real_slots[i]: 1 + the last slot of token i that is not padding (0 if it has none).
        real_slots = ((char_ids != self.padding_id) * positions).amax(dim=1) if n_tokens else positions[:0]
        groups = self.real_slot_groups if fast_paths.current().allows("trimmed_windows") else ()
        limits = [limit for limit in groups if limit < max_chars] + [max_chars]
        group = torch.bucketize(real_slots, torch.tensor(limits, device=char_ids.device))  # (n_tokens,)
        order = group.argsort(stable=True)
        group_sizes = torch.bincount(group, minlength=len(limits)).tolist()
        weight, bias = self._stacked_filters()  # (n_filters, char_dim * max_width), (n_filters,)
        widths = torch.tensor([w for w, count in self.options.filters for _ in range(count)], device=char_ids.device)
        padding = (
            self.char_embedding.weight[self.padding_id].unsqueeze(-1).expand(-1, max_width)
        )  # (char_dim, max_width)
        padding_windows = torch.mv(weight, padding.reshape(-1)) + bias  # (n_filters,): a window of padding
        pooled_groups = [
            self._convolve_group(char_ids.index_select(0, rows), limit, weight, bias, widths, padding_windows)
            for rows, limit in zip(order.split(group_sizes), limits, strict=True)
            if len(rows)
        ]
        pooled = torch.cat(pooled_groups) if pooled_groups else bias.new_zeros(0, self.options.n_filters)
        return pooled.index_select(0, order.argsort())  # back to the order of char_ids

    def _stacked_filters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All filters as one ``(n_filters, char_dim * max_width)`` matrix (narrow ones padded with
        zero columns on the right) and the ``(n_filters,)`` biases."""
        max_width = max(width for width, _ in self.options.filters)
        weights = [nn.functional.pad(conv.weight, (0, max_width - conv.weight.shape[-1])) for conv in self.convolutions]
        stacked = torch.cat(weights)  # (n_filters, char_dim, max_width)
        return stacked.reshape(stacked.shape[0], -1), torch.cat([conv.bias for conv in self.convolutions])

    def _convolve_group(
        self,
        char_ids: torch.Tensor,
        limit: int,
        weight: torch.Tensor,
        bias: torch.Tensor,
        widths: torch.Tensor,
        padding_windows: torch.Tensor,
    ) -> torch.Tensor:
        """Tokens with at most ``limit`` real slots: ``(n, max_chars)`` ids -> ``(n, n_filters)``.

        ``widths`` holds each filter's width, ``(n_filters,)``.

        Every filter's windows starting in the first ``limit`` slots, as one matrix multiply. A
        filter's later windows, if it has any, lie wholly in the padding: they count as
        ``padding_windows``. One kernel for every group, so that a token's vector does not depend
        on the group (or the batch) it is in.
        """
        n, max_chars = char_ids.shape
        max_width = weight.shape[1] // self.options.char_embedding_dim
        slots = limit + max_width - 1
        embedded = self.char_embedding(char_ids[:, :slots])  # (n, min(slots, max_chars), char_dim)
        if slots > max_chars:
            # Windows that run past the last slot: of those kept below, only zero filter columns
            # read these extra slots.
            embedded = nn.functional.pad(embedded, (0, 0, 0, slots - max_chars))
        windows = embedded.unfold(1, max_width, 1)  # (n, limit, char_dim, max_width), a view
        windows = windows.reshape(n * limit, -1)  # (n * limit, char_dim * max_width)
        sources = [conv.weight for conv in self.convolutions]
        values = onednn.packed_linear(self.derived, "filters", windows, weight, None, sources)
        values = values.view(n, limit, -1)  # (n, limit, n_filters)
        starts = torch.arange(limit, device=char_ids.device).unsqueeze(1)
        fits = starts + widths <= max_chars  # (limit, n_filters): the window lies in the token
        if not bool(fits.all()):
            values = values.masked_fill(~fits, float("-inf"))
        # max(x + b) == max(x) + b exactly: rounding is monotonic.
        pooled = values.amax(dim=1) + bias
        has_padding_windows = limit + widths <= max_chars  # (n_filters,) a window starts at slot `limit`
        return torch.where(has_padding_windows, torch.maximum(pooled, padding_windows), pooled)


class TokenCache:
    """Vectors of a fixed set of tokens for :meth:`CharacterEncoder.forward`, looked up by ids.

    Args:
        char_ids: ``(n_tokens, width)`` ids; repeated rows are kept once.
    """

    # Tokens encoded at once when the cache is (re)computed: bounds the memory of a refill.
    fill_rows = 4096

    def __init__(self, char_ids: torch.Tensor) -> None:
        if char_ids.dim() != 2:
            raise ValueError(f"cache_tokens expects (n_tokens, width) ids, got shape {tuple(char_ids.shape)}")
        self.char_ids, _ = unique_rows(char_ids.cpu())
        self.rows = {row.tobytes(): i for i, row in enumerate(self.char_ids.numpy())}
        self._derived = DerivedTensors()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        """Forget the computed vectors (computed again when next needed)."""
        self._derived.clear()

    def __len__(self) -> int:
        return len(self.rows)

    def encode(self, encoder: CharacterEncoder, distinct: torch.Tensor) -> torch.Tensor:
        """``(n, width)`` distinct ids -> ``(n, projection_dim)``: cached rows looked up, others encoded."""
        vectors = self._vectors(encoder)
        found = [self.rows.get(row.tobytes(), -1) for row in distinct.cpu().numpy()]
        hit = torch.tensor([i >= 0 for i in found], device=distinct.device)
        self.hits += int(hit.sum())
        self.misses += len(found) - int(hit.sum())
        encoded = vectors.new_empty(len(found), vectors.shape[1])
        if hit.any():
            cached_rows = torch.tensor([i for i in found if i >= 0], device=vectors.device)
            encoded[hit] = vectors.index_select(0, cached_rows)
        if not hit.all():
            encoded[~hit] = encoder.encode_distinct(distinct[~hit])
        return encoded

    def _vectors(self, encoder: CharacterEncoder) -> torch.Tensor:
        """The vectors of every cached token under the encoder's current weights."""

        def compute() -> torch.Tensor:
            weight = encoder.char_embedding.weight
            chunks = self.char_ids.to(weight.device).split(self.fill_rows)
            parts = [encoder.encode_distinct(chunk) for chunk in chunks]
            return torch.cat(parts) if parts else weight.new_zeros(0, encoder.options.projection_dim)

        # one entry per precision: bf16 vectors must never answer a float32 forward
        return self._derived.get(f"vectors.{precision.current()}", list(encoder.parameters()), compute)


def unique_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of a 2-d integer tensor and, for each row, the index of its distinct row.

    The same sets as ``torch.unique(rows, dim=0, return_inverse=True)`` (whose CPU version compares
    rows one pair at a time), from a few whole-tensor sorts: non-negative ids are packed into as
    few int64 keys per row as their bit width allows, and the keys are sorted column by column
    (least significant first, stable), which orders the rows lexicographically.

    Args:
        rows: ``(n, width)`` integer ids.

    Returns:
        ``(n_distinct, width)`` distinct rows (sorted) and ``(n,)`` int64 indices into them.
    """
    n, width = rows.shape
    if n == 0 or width == 0 or int(rows.min()) < 0:
        distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
        return distinct, inverse.view(-1)
    bits = max(1, int(rows.max()).bit_length())
    per_key = max(1, 63 // bits)  # ids per int64 key, so that a key stays below 2 ** 63
    n_keys = -(-width // per_key)
    padded = nn.functional.pad(rows.long(), (0, n_keys * per_key - width)).view(n, n_keys, per_key)
    # The first id of a key in its highest bits, so that keys compare as their ids do.
    shifts = torch.tensor([1 << (bits * j) for j in reversed(range(per_key))], dtype=torch.long, device=rows.device)
    keys = (padded * shifts).sum(dim=-1)  # (n, n_keys), exact: every key < 2 ** 63
    order = torch.arange(n, device=rows.device)
    for k in reversed(range(n_keys)):
        order = order.index_select(0, keys[order, k].argsort(stable=True))
    ordered = keys.index_select(0, order)
    starts = torch.ones(n, dtype=torch.bool, device=rows.device)
    starts[1:] = (ordered[1:] != ordered[:-1]).any(dim=1)  # a row unlike the previous one starts a group
    group = starts.cumsum(0) - 1  # (n,) distinct index of each sorted row
    inverse = torch.empty_like(group)
    inverse[order] = group
    return rows.index_select(0, order[starts]), inverse
