"""Layer modes: how the biLM's L + 1 layers become one vector per token.

A mode is parsed once into a frozen :class:`LayerMode`; :func:`select_layers` applies it as a
pure function. Only the trainable ``"mix"`` needs state, in :class:`ScalarMix`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

NAMED_MODES = ("all", "top", "average", "bottom", "mix")
#: What :class:`ScalarMix`'s layer norm normalises over.
NORM_SCOPES = ("sentence", "batch")
#: AllenNLP's ``tiny_value_of_dtype`` for float32 and float64, added to the batch variance.
ALLENNLP_TINY = 1e-13
ModeSpec = str | int | Sequence[int]


@dataclass(frozen=True)
class LayerMode:
    """A parsed layer mode.

    Attributes:
        kind: ``"all"``, ``"top"``, ``"average"``, ``"bottom"``, ``"mix"`` or ``"layers"``.
        indices: for ``"layers"``, the chosen layers (non-negative, in the given order).
        num_layers: layers of the biLM the mode was parsed for (``n_lstm_layers + 1``).
    """

    kind: str
    indices: tuple[int, ...]
    num_layers: int

    @property
    def spec(self) -> str:
        """Canonical string form: ``"all"``, ``"mix"``, ``"2"``, ``"0,2"``..."""
        return self.kind if self.kind != "layers" else ",".join(str(i) for i in self.indices)

    @property
    def num_selected(self) -> int:
        """How many layer vectors are concatenated per token."""
        if self.kind == "all":
            return self.num_layers
        return len(self.indices) if self.kind == "layers" else 1

    def embedding_length(self, layer_dim: int) -> int:
        """Length of a token vector for layers of size ``layer_dim``."""
        return self.num_selected * layer_dim


def _choices(num_layers: int) -> str:
    return (
        f"one of {', '.join(repr(m) for m in NAMED_MODES)}, a layer index in "
        f"[{-num_layers}, {num_layers - 1}] or a list of them (e.g. [0, 2] or '0,2'); "
        f"this model has {num_layers} layers (0 = characters, 1..{num_layers - 1} = LSTM)"
    )


def parse_mode(mode: ModeSpec, num_layers: int) -> LayerMode:
    """Parse a user's layer mode for a biLM with ``num_layers`` output layers.

    Raises:
        ValueError: an unknown mode or a layer index out of range; the message lists the
            valid choices and the model's number of layers.
    """
    if isinstance(mode, str):
        text = mode.strip().lower()
        if text in NAMED_MODES:
            return LayerMode(text, (), num_layers)
        try:
            indices: Sequence[int] = [int(part) for part in text.split(",")]
        except ValueError:
            raise ValueError(f"unknown embedding_type {mode!r}; expected {_choices(num_layers)}") from None
    elif isinstance(mode, bool):
        raise ValueError(f"unknown embedding_type {mode!r}; expected {_choices(num_layers)}")
    elif isinstance(mode, int):
        indices = [mode]
    elif isinstance(mode, Sequence) and mode and all(isinstance(i, int) and not isinstance(i, bool) for i in mode):
        indices = list(mode)
    else:
        raise ValueError(f"unknown embedding_type {mode!r}; expected {_choices(num_layers)}")
    bad = [i for i in indices if not -num_layers <= i < num_layers]
    if bad:
        raise ValueError(f"embedding_type {mode!r}: layer {bad[0]} is out of range; expected {_choices(num_layers)}")
    return LayerMode("layers", tuple(i % num_layers for i in indices), num_layers)


def chosen_layers(layers: torch.Tensor, mode: LayerMode) -> torch.Tensor:
    """The layers a fixed mode takes, still stacked.

    Args:
        layers: ``(num_layers, ..., dim)`` biLM layers.
        mode: any mode but ``"mix"`` (which needs :class:`ScalarMix`).

    Returns:
        ``(mode.num_selected, ..., dim)``: every layer (``"all"``), the top or bottom one, their
        mean (``"average"``), or the listed ones in order.
    """
    if layers.shape[0] != mode.num_layers:
        raise ValueError(f"expected {mode.num_layers} layers, got {layers.shape[0]}")
    if mode.kind == "all":
        return layers
    if mode.kind == "top":
        return layers[-1:]
    if mode.kind == "bottom":
        return layers[:1]
    if mode.kind == "average":
        return layers.mean(dim=0, keepdim=True)
    if mode.kind == "layers":
        return layers[list(mode.indices)]
    raise ValueError(f"mode {mode.spec!r} is not a fixed selection; use ScalarMix")


def select_layers(layers: torch.Tensor, mode: LayerMode) -> torch.Tensor:
    """Apply a fixed mode: the chosen layers concatenated per token (Flair's token vectors).

    Args:
        layers: ``(num_layers, ..., dim)`` biLM layers.
        mode: any mode but ``"mix"``.

    Returns:
        ``(..., mode.embedding_length(dim))`` token vectors.
    """
    chosen = chosen_layers(layers, mode)  # (k, ..., dim)
    return chosen[0] if len(chosen) == 1 else torch.cat(list(chosen), dim=-1)


class ScalarMix(nn.Module):
    """The ELMo paper's task weighting: ``gamma * sum_j softmax(w)_j * h_j``.

    Args:
        num_layers: layers to mix.
        initial_weights: starting ``w`` (before the softmax); zeros (equal weights) by default,
            which with ``gamma = 1`` makes the mix start equal to the ``"average"`` mode.
        layer_norm: normalise each layer to zero mean and unit variance first, as AllenNLP's
            ``ScalarMix(do_layer_norm=True)``, but by default per sentence (see ``norm_over``).
        trainable: whether ``w`` and ``gamma`` receive gradients.
        norm_over: what ``layer_norm`` normalises over: ``"sentence"`` (each sentence's real
            tokens) or ``"batch"`` (the real tokens of the whole batch, as AllenNLP does, which
            makes a sentence's vectors depend on its batch; used by
            :class:`flair_elmo_modes.allennlp.Elmo`).
    """

    def __init__(
        self,
        num_layers: int,
        initial_weights: Sequence[float] | None = None,
        layer_norm: bool = False,
        trainable: bool = True,
        norm_over: str = "sentence",
    ) -> None:
        super().__init__()
        weights = [0.0] * num_layers if initial_weights is None else [float(w) for w in initial_weights]
        if len(weights) != num_layers:
            raise ValueError(f"initial mix weights: got {len(weights)} values for {num_layers} layers")
        if norm_over not in NORM_SCOPES:
            raise ValueError(f"norm_over must be one of {', '.join(map(repr, NORM_SCOPES))}, got {norm_over!r}")
        self.num_layers = num_layers
        self.layer_norm = layer_norm
        self.norm_over = norm_over
        self.scalar_parameters = nn.Parameter(torch.tensor(weights), requires_grad=trainable)
        self.gamma = nn.Parameter(torch.tensor(1.0), requires_grad=trainable)

    def normalized_weights(self) -> tuple[list[float], float]:
        """The current ``softmax(w)`` per layer and ``gamma``, as plain floats."""
        with torch.no_grad():
            return torch.softmax(self.scalar_parameters, dim=0).tolist(), float(self.gamma)

    def forward(self, layers: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mix layers.

        Args:
            layers: ``(num_layers, batch, timesteps, dim)``.
            mask: ``(batch, timesteps)`` bool, needed with ``layer_norm``.

        Returns:
            ``(batch, timesteps, dim)``.
        """
        if layers.shape[0] != self.num_layers:
            raise ValueError(f"ScalarMix was built for {self.num_layers} layers, got {layers.shape[0]}")
        if self.layer_norm:
            if mask is None:
                raise ValueError("ScalarMix with layer_norm needs the mask")
            normalize = _normalize_per_sentence if self.norm_over == "sentence" else _normalize_over_batch
            layers = normalize(layers, mask)
        weights = torch.softmax(self.scalar_parameters, dim=0).to(layers.dtype)
        return self.gamma.to(layers.dtype) * torch.einsum("l,l...->...", weights, layers)


def _normalize_per_sentence(layers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over each sentence's real tokens and dims, per layer."""
    weight = mask.to(layers.dtype).unsqueeze(-1)  # (batch, timesteps, 1)
    count = (weight.sum(dim=(1, 2)) * layers.shape[-1]).clamp(min=1).view(1, -1, 1, 1)  # (1, batch, 1, 1)
    mean = (layers * weight).sum(dim=(2, 3), keepdim=True) / count
    variance = (((layers - mean) * weight) ** 2).sum(dim=(2, 3), keepdim=True) / count
    return (layers - mean) / torch.sqrt(variance + 1e-12)


def _normalize_over_batch(layers: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """AllenNLP's layer norm: zero mean, unit variance over the real tokens and dims of the whole
    batch, per layer. Padding positions are normalised too (they are not zero afterwards)."""
    weight = mask.to(layers.dtype).unsqueeze(-1)  # (batch, timesteps, 1)
    count = mask.sum() * layers.shape[-1]  # real elements per layer
    masked = layers * weight
    mean = masked.sum(dim=(1, 2, 3), keepdim=True) / count  # (num_layers, 1, 1, 1)
    variance = (((masked - mean) * weight) ** 2).sum(dim=(1, 2, 3), keepdim=True) / count
    return (layers - mean) / torch.sqrt(variance + ALLENNLP_TINY)
