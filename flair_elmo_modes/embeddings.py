"""``ELMoEmbeddings``: ELMo as a Flair ``TokenEmbeddings``, with layer modes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import flair
import torch
from flair.data import Sentence
from flair.embeddings.base import register_embeddings
from flair.embeddings.token import TokenEmbeddings

from flair_elmo_modes.bilm.fast.derived import apply_and_drop
from flair_elmo_modes.bilm.lexicons import Lexicons
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.layer_cache import LayerCache
from flair_elmo_modes.layers import LayerMode, ModeSpec, ScalarMix, parse_mode, select_layers
from flair_elmo_modes.models import DEFAULT_MODEL, ModelSpec, load_model
from flair_elmo_modes.runner import BiLmRunner

log = logging.getLogger(__name__)


@register_embeddings
class ELMoEmbeddings(TokenEmbeddings):
    """Contextual word embeddings from a pretrained ELMo biLM (Peters et al., 2018).

    Args:
        model: a published AllenNLP model ("small", "medium", "original", "original5.5B",
            "pt", "pubmed"; downloaded once into ``flair.cache_root / "embeddings"``), the model
            shipped with this package ("en-tiny"), a directory with ``options.json`` and
            ``weights.hdf5``, or an ELMoForManyLangs model directory (``config.json``,
            ``char.dic``, ``token_embedder.pkl``, ``encoder.pkl``).
        options_file: explicit ``options.json`` (path or URL); needs ``weight_file``.
        weight_file: explicit ``weights.hdf5`` (path or URL); needs ``options_file``.
        embedding_type: how the L + 1 biLM layers become a token vector: ``"all"``
            (concatenated, Flair's legacy default), ``"top"``, ``"average"``, ``"bottom"``
            (layer 0, the character encoding), a layer index (negative counts from the top),
            a list of indices (concatenated in that order, also as a string ``"0,2"``), or
            ``"mix"`` (the paper's trainable ``gamma * sum softmax(w)_j h_j``).
        fine_tune: train the biLM's weights with the downstream model.
        stateful: carry LSTM state across batches like AllenNLP (vectors then depend on the
            order of batches). Off by default: a sentence's vectors depend only on itself.
        embedding_mode: the name of this argument in Flair's legacy ``ELMoEmbeddings``.
        mix_weights: initial ``w`` of ``"mix"`` (before the softmax); zeros by default.
        mix_layer_norm: normalise each layer per sentence before mixing (``"mix"`` only).
        name: the embedding's name; ``elmo-{model}-{embedding_type}`` by default.
        layer_cache_size: keep the biLM layers of up to this many sentences (by token texts)
            and reuse them, e.g. across epochs of ``"mix"`` training; 0 (default) turns the
            cache off. Only for a frozen, stateless biLM; dropped whenever the biLM changes.
        bilm: an already built biLM instead of model files.
        options: the options dict of the biLM, to rebuild it without files (used by
            :meth:`from_params`; the weights come from the saved state dict).
        lexicons: with ``options``, an ELMoForManyLangs model's lexicons (as ``to_params`` keeps them).
        format: ``"allennlp"`` or ``"manylangs"``: read the ``model`` directory as that format
            only (by default told by its files).
        precision: of the frozen biLM's products: ``"fp32"`` (default), ``"bf16"`` (CPUs with
            avx512_bf16 or amx_bf16, GPUs) or ``"fp16"`` (CUDA only); the vectors are float32 in
            each (see ``ElmoEmbedder``). Fine-tuning trains in float32.

    ``self.embedding_type`` stays Flair's ``"word-level"``; the chosen mode is
    ``self.layer_mode``.
    """

    def __init__(
        self,
        model: str | Path | None = DEFAULT_MODEL,
        options_file: str | Path | None = None,
        weight_file: str | Path | None = None,
        embedding_type: ModeSpec | None = None,
        fine_tune: bool = False,
        stateful: bool = False,
        embedding_mode: ModeSpec | None = None,
        mix_weights: Sequence[float] | None = None,
        mix_layer_norm: bool = False,
        name: str | None = None,
        layer_cache_size: int = 0,
        bilm: ElmoBiLm | None = None,
        options: dict[str, Any] | None = None,
        lexicons: dict[str, Any] | None = None,
        format: str | None = None,
        precision: str = "fp32",
    ) -> None:
        super().__init__()
        if embedding_type is not None and embedding_mode is not None:
            raise ValueError(
                f"give embedding_type or its alias embedding_mode, not both "
                f"(got embedding_type={embedding_type!r}, embedding_mode={embedding_mode!r})"
            )
        mode_spec = embedding_type if embedding_type is not None else embedding_mode
        if bilm is None and options is not None:
            source = "saved ELMoEmbeddings options"
            saved_lexicons = None if lexicons is None else Lexicons.from_dict(lexicons, source)
            architecture = ElmoOptions.from_dict(options, source=source, byte_ids=saved_lexicons is None)
            bilm = ElmoBiLm(architecture, saved_lexicons)
            model_name = str(model)
        elif bilm is None:
            files = ModelSpec.parse(model, options_file, weight_file, format).resolve()
            bilm = load_model(files)
            model_name = files.name
        else:
            model_name = str(model) if model is not None else "custom"
        self.model_name = model_name
        self.bilm = bilm
        self.layer_mode: LayerMode = parse_mode(
            "all" if mode_spec is None else mode_spec, bilm.options.num_output_layers
        )
        self.mix: ScalarMix | None = None
        if self.layer_mode.kind == "mix":
            self.mix = ScalarMix(self.layer_mode.num_layers, initial_weights=mix_weights, layer_norm=mix_layer_norm)
        elif mix_weights is not None or mix_layer_norm:
            raise ValueError(f"mix_weights and mix_layer_norm need embedding_type='mix', not {self.layer_mode.spec!r}")
        self.mix_initial_weights = None if mix_weights is None else [float(w) for w in mix_weights]
        self.mix_layer_norm = mix_layer_norm
        self.fine_tune = fine_tune
        self.stateful = stateful
        if fine_tune and precision != "fp32":
            raise ValueError(f"precision={precision!r} serves a frozen biLM; fine_tune=True trains in float32")
        self.runner = BiLmRunner(bilm.to(flair.device), stateful, precision)
        self.precision = self.runner.precision
        if layer_cache_size and (fine_tune or stateful):
            raise ValueError("layer_cache_size needs a frozen, stateless biLM (fine_tune=False, stateful=False)")
        self.layer_cache = LayerCache(layer_cache_size)
        self.name = name or f"elmo-{model_name}-{self.layer_mode.spec}"
        self.static_embeddings = not fine_tune and self.mix is None
        self.__embedding_length = self.layer_mode.embedding_length(bilm.options.output_dim)
        self.bilm.requires_grad_(fine_tune)
        self.to(flair.device)
        self.eval()

    @property
    def embedding_length(self) -> int:
        return self.__embedding_length

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        return apply_and_drop(self, lambda: super(ELMoEmbeddings, self)._apply(fn, recurse), self.layer_cache.clear)

    def train(self, mode: bool = True) -> ELMoEmbeddings:
        """Train or eval; a frozen biLM stays in eval mode."""
        super().train(mode)
        if not self.fine_tune:
            self.bilm.eval()
        return self

    def mix_weights(self) -> tuple[list[float], float]:
        """The ``"mix"`` mode's current ``softmax(w)`` per layer and ``gamma``."""
        if self.mix is None:
            raise ValueError(f"embedding_type is {self.layer_mode.spec!r}, not 'mix': there are no mix weights")
        return self.mix.normalized_weights()

    def reset_states(self) -> None:
        """Forget the carried LSTM state (``stateful=True`` only)."""
        self.runner.reset_states()

    def _add_embeddings_internal(self, sentences: list[Sentence]) -> list[Sentence]:
        texts = [[token.text for token in sentence] for sentence in sentences]
        if not any(texts):
            return sentences
        if self.layer_cache.max_sentences:
            layers, mask = self._cached_layers(texts)
        else:
            layers, mask = self._run_bilm(texts)
        if self.mix is not None:
            vectors = self.mix(layers, mask)  # (batch, timesteps, dim)
        else:
            vectors = select_layers(layers, self.layer_mode)  # (batch, timesteps, length)
        for sentence, sentence_vectors in zip(sentences, vectors, strict=True):
            for token, vector in zip(sentence, sentence_vectors, strict=False):  # vectors are padded
                token.set_embedding(self.name, vector)
        return sentences

    def _run_bilm(self, texts: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(num_layers, batch, timesteps, dim)`` layers and ``(batch, timesteps)`` mask."""
        output = self.runner.run(texts, grad=self.fine_tune)
        return output.layers, output.mask

    def _cached_layers(self, texts: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`_run_bilm`, running the biLM only on sentences not in the cache."""
        self.layer_cache.validate(self.bilm)
        found = [self.layer_cache.get(tokens) for tokens in texts]
        missing = list(dict.fromkeys(tuple(t) for t, entry in zip(texts, found, strict=True) if entry is None))
        if missing:
            computed, _ = self._run_bilm([list(tokens) for tokens in missing])
            # clone: a slice would keep the whole padded batch alive in the cache
            fresh = {tokens: computed[:, row, : len(tokens)].clone() for row, tokens in enumerate(missing)}
            for tokens, entry in fresh.items():
                self.layer_cache.put(tokens, entry)
            found = [fresh[tuple(t)] if entry is None else entry for t, entry in zip(texts, found, strict=True)]
        timesteps = max(len(tokens) for tokens in texts)
        first = found[0]
        layers = first.new_zeros(first.shape[0], len(texts), timesteps, first.shape[-1])
        mask = torch.zeros(len(texts), timesteps, dtype=torch.bool, device=first.device)
        for i, entry in enumerate(found):
            layers[:, i, : entry.shape[1]] = entry
            mask[i, : entry.shape[1]] = True
        return layers, mask

    def extra_repr(self) -> str:
        return (
            f"model={self.model_name!r}, embedding_type={self.layer_mode.spec!r}, fine_tune={self.fine_tune}, "
            f"precision={self.precision!r}"
        )

    def __str__(self) -> str:
        return self.name

    def to_params(self) -> dict[str, Any]:
        """Architecture and mode only: no file paths. Weights travel in the state dict."""
        return {
            "options": self.bilm.options.to_dict(),
            "lexicons": None if self.bilm.lexicons is None else self.bilm.lexicons.to_dict(),
            "model": self.model_name,
            "embedding_type": self.layer_mode.spec,
            "fine_tune": self.fine_tune,
            "stateful": self.stateful,
            "mix_weights": self.mix_initial_weights,
            "mix_layer_norm": self.mix_layer_norm,
            "name": self.name,
            "layer_cache_size": self.layer_cache.max_sentences,
            "precision": self.precision,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ELMoEmbeddings:
        """Rebuild from :meth:`to_params` without any file or download."""
        return cls(**params)
