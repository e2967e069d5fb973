"""What a corpus job computes: the model and the output flags of ``flair-elmo embed``, parsed once."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flair_elmo_modes.bilm.precision import PRECISIONS
from flair_elmo_modes.cli.embed import DEFAULT_BATCH_SIZE
from flair_elmo_modes.cli.errors import UsageError
from flair_elmo_modes.hdf5_output import DEFAULT_SORT_BATCHES


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
        if self.mode is not None and self.layers is not None:
            raise UsageError("give a layer mode (all, top, average) or layers, not both")
        if self.mode not in (None, "all", "top", "average"):
            raise UsageError(f"layer mode {self.mode!r}: expected 'all', 'top' or 'average' (or layers)")
        if self.layers is not None and not self.layers:
            raise UsageError("layers: expected at least one layer index")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        for name in ("batch_size", "sort_batches"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UsageError(f"{name}: expected a positive integer, got {value!r}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> EmbedSettings:
        """The settings of parsed ``flair-elmo embed-corpus`` arguments."""
        return cls(
            model=args.model,
            model_format=getattr(args, "model_format", None),
            options_file=args.options_file,
            weight_file=args.weight_file,
            mode=args.mode,
            layers=None if args.layers is None else tuple(args.layers),
            batch_size=args.batch_size,
            sort_batches=DEFAULT_SORT_BATCHES if args.sort_batches is None else args.sort_batches,
            use_sentence_keys=args.use_sentence_keys,
            forget_sentences=args.forget_sentences,
            vocab_path=args.vocab_path,
            precision=args.precision,
        )

    def embed_arguments(self, cuda_device: int = -1) -> argparse.Namespace:
        """The arguments ``flair-elmo embed`` would have parsed: what its loader takes, so that
        every actor builds the embedder exactly as ``flair-elmo embed`` does."""
        return argparse.Namespace(
            model=self.model,
            model_format=self.model_format,
            options_file=self.options_file,
            weight_file=self.weight_file,
            mode=self.mode,
            layers=None if self.layers is None else list(self.layers),
            batch_size=self.batch_size,
            sort_batches=self.sort_batches,
            use_sentence_keys=self.use_sentence_keys,
            forget_sentences=self.forget_sentences,
            vocab_path=self.vocab_path,
            precision=self.precision,
            stateful=False,
            cuda_device=cuda_device,
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
