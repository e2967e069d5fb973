"""What a corpus job computes: the model and the output flags of ``flair-elmo embed``, parsed once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flair_elmo_modes.catalogue import DEFAULT_MODEL
from flair_elmo_modes.embedding_spec import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SORT_BATCHES,
    EmbeddingSpec,
    check_settings,
    model_from_flags,
)
from flair_elmo_modes.models import ModelSpec


@dataclass(frozen=True)
class EmbedSettings:
    """The flags of ``flair-elmo embed`` that a corpus job takes (``--stateful`` excepted: an
    actor embeds many shards, and a shard's vectors must not depend on the shards before it).

    Attributes:
        model: a model name or directory (``--model``); ``None`` with neither file: allennlp's default.
        model_format: read the ``model`` directory as this format only (``--model-format``).
        options_file: ``--options-file`` (with ``weight_file``, instead of ``model``).
        weight_file: ``--weight-file``.
        mode: ``"all"`` (default), ``"top"`` or ``"average"``; ``None`` with ``layers``.
        layers: chosen layers (``--layers 0,-1``), instead of ``mode``.
        batch_size: sentences per biLM call.
        sort_batches: lines batched by length at a time, in batches (``--sort-batches``).
        use_sentence_keys: name datasets by their sentence; no ``sentence_to_index``.
        forget_sentences: do not write ``sentence_to_index``.
        vocab_path: a vocabulary whose character-CNN vectors each actor computes once.
        precision: of the biLM's products (``--precision``: fp32, bf16, fp16).
    """

    model: str | None = None
    model_format: str | None = None
    options_file: str | None = None
    weight_file: str | None = None
    mode: str | None = None
    layers: tuple[int, ...] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    sort_batches: int = DEFAULT_SORT_BATCHES
    use_sentence_keys: bool = False
    forget_sentences: bool = False
    vocab_path: Path | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        # The model is parsed when the job runs (embedding_spec): an unknown one is the job's error.
        check_settings(self.mode, self.layers, self.batch_size, self.sort_batches, False, self.precision)

    def model_spec(self) -> ModelSpec:
        """The model, chosen as ``flair-elmo embed``'s model flags choose it.

        Raises:
            UsageError: one of the two files alone, a model beside them, or an unknown model.
        """
        return model_from_flags(self.model, self.options_file, self.weight_file, self.model_format, DEFAULT_MODEL)

    def embedding_spec(self, cuda_device: int = -1) -> EmbeddingSpec:
        """The settings as an :class:`~flair_elmo_modes.embedding_spec.EmbeddingSpec`: what every
        actor builds its embedder from, exactly as ``flair-elmo embed`` does (never stateful)."""
        return EmbeddingSpec(
            model=self.model_spec(),
            mode=self.mode,
            layers=self.layers,
            batch_size=self.batch_size,
            sort_batches=self.sort_batches,
            stateful=False,
            cuda_device=cuda_device,
            precision=self.precision,
            vocab_path=self.vocab_path,
        )

    def output_flags(self) -> dict[str, Any]:
        """The flags besides model and mode that decide an output file's bytes (for the manifest).

        Batch size and sort window are among them: they change which sentences share a batch,
        and so the last bits of the vectors (see the README's "Determinism"); the precision
        changes them more.
        """
        return {
            "precision": self.precision,
            "batch_size": self.batch_size,
            "sort_batches": self.sort_batches,
            "use_sentence_keys": self.use_sentence_keys,
            "forget_sentences": self.forget_sentences,
        }
