"""What an embedding job is, as one value, and the one function that builds its embedder.

``flair-elmo embed``, ``flair-elmo embed-corpus`` (its driver and every Ray actor) and the Python
API of corpus jobs describe the same thing: a model, a layer mode, batching, state, device,
precision and an optional vocabulary. :class:`EmbeddingSpec` holds it, checks it once, and
:func:`build_embedder` turns it into an :class:`~flair_elmo_modes.embedder.ElmoEmbedder` and its
:class:`~flair_elmo_modes.layers.LayerMode`. The LSTM kernels are not a setting: they are measured
per machine (:mod:`flair_elmo_modes.bilm.fast.kernel_plan`).

Errors name the settings as ``flair-elmo embed`` spells them (``--layers``, ``--precision``), the
names corpus jobs take too. No torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from flair_elmo_modes.bilm.precision import PRECISIONS
from flair_elmo_modes.errors import UsageError
from flair_elmo_modes.hdf5_output import DEFAULT_BATCH_SIZE, DEFAULT_SORT_BATCHES
from flair_elmo_modes.models import ModelFiles, ModelSpec, model_options

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.options import ElmoOptions
    from flair_elmo_modes.embedder import ElmoEmbedder
    from flair_elmo_modes.layers import LayerMode

#: The layer modes named by a word; any other selection is a tuple of ``layers``.
NAMED_MODES = ("all", "top", "average")


def model_from_flags(
    model: str | Path | None,
    options_file: str | Path | None,
    weight_file: str | Path | None,
    model_format: str | None,
    default: str,
) -> ModelSpec:
    """The model chosen by the model flags (``--model``, ``--model-format``, ``--options-file``,
    ``--weight-file``), else ``default``; errors name the flags.

    Raises:
        UsageError: one of the two files alone, ``--model`` beside them, or an unknown model.
    """
    if (options_file is None) != (weight_file is None):
        flags = ["--options-file", "--weight-file"]
        given, missing = flags if options_file is not None else flags[::-1]
        raise UsageError(f"{given} needs {missing} too (or use --model)")
    if options_file is not None and model is not None:
        raise UsageError("give --model or --options-file/--weight-file, not both")
    chosen = model if model is not None or options_file is not None else default
    return ModelSpec.parse(chosen, options_file, weight_file, model_format)


def check_settings(
    mode: str | None,
    layers: tuple[int, ...] | None,
    batch_size: int,
    sort_batches: int | None,
    stateful: bool,
    precision: str,
) -> None:
    """The checks of :class:`EmbeddingSpec`'s settings besides the model (see its attributes).

    Raises:
        UsageError: a setting out of range or two that exclude each other.
    """
    if mode is not None and layers is not None:
        raise UsageError("give a layer mode (all, top, average) or layers, not both")
    if mode not in (None, *NAMED_MODES):
        raise UsageError(f"layer mode {mode!r}: expected 'all', 'top' or 'average' (or layers)")
    if layers is not None and not layers:
        raise UsageError("layers: expected at least one layer index")
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    for name, value in (("batch_size", batch_size), ("sort_batches", sort_batches)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UsageError(f"{name}: expected a positive integer, got {value!r}")
    if stateful and sort_batches is not None and sort_batches > 1:
        raise UsageError("--sort-batches > 1 reorders lines across batch rows; --stateful needs --sort-batches 1")


@dataclass(frozen=True)
class EmbeddingSpec:
    """The settings of an embedding job, checked when made.

    Attributes:
        model: the model (see :meth:`~flair_elmo_modes.models.ModelSpec.parse`).
        mode: ``"all"`` (the default when neither is given), ``"top"`` or ``"average"``.
        layers: chosen layer indices (``(0, -1)``; negative counts from the top), instead of ``mode``.
        batch_size: sentences per biLM call.
        sort_batches: length-aware batching: ``sort_batches * batch_size`` lines are batched by
            length at a time; None: :data:`DEFAULT_SORT_BATCHES`, or 1 when ``stateful``.
        stateful: carry LSTM state from batch to batch as allennlp does (needs ``sort_batches`` 1).
        cuda_device: GPU index, -1 for the CPU.
        precision: of the biLM's products: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA only).
        vocab_path: a vocabulary (one token per line) whose character-CNN vectors are computed once.

    Raises:
        UsageError: a setting out of range or two that exclude each other.
    """

    model: ModelSpec
    mode: str | None = None
    layers: tuple[int, ...] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    sort_batches: int | None = None
    stateful: bool = False
    cuda_device: int = -1
    precision: str = "fp32"
    vocab_path: Path | None = None

    def __post_init__(self) -> None:
        check_settings(self.mode, self.layers, self.batch_size, self.sort_batches, self.stateful, self.precision)

    @property
    def batch_window(self) -> int:
        """Batches read ahead and batched by length (``sort_batches`` or its default)."""
        if self.sort_batches is not None:
            return self.sort_batches
        return 1 if self.stateful else DEFAULT_SORT_BATCHES

    def layer_mode(self, options: ElmoOptions) -> LayerMode:
        """The layer mode for a model of ``options``.

        Raises:
            UsageError: a layer index out of this model's range (names its layers).
        """
        from flair_elmo_modes.layers import parse_mode

        num_layers = options.num_output_layers
        if self.layers is None:
            return parse_mode(self.mode or "all", num_layers)
        spec = ",".join(str(i) for i in self.layers)
        bad = [i for i in self.layers if not -num_layers <= i < num_layers]
        if bad:
            raise UsageError(
                f"--layers {spec}: layer {bad[0]} is out of range; this model has {num_layers} layers "
                f"(0 = characters, 1..{num_layers - 1} = LSTM; -1 is the top)"
            )
        return parse_mode(spec, num_layers)

    def check(self) -> tuple[ModelFiles, LayerMode, list[str] | None]:
        """Everything that can be checked without loading weights: the vocabulary file (read first:
        a local file, before any download), the model's files (downloaded if needed) and the layer
        mode against its architecture. Returns them, with the vocabulary's tokens (None without one).
        """
        vocabulary = read_vocabulary(self.vocab_path) if self.vocab_path is not None else None
        files = self.model.resolve()
        return files, self.layer_mode(model_options(files)), vocabulary


def build_embedder(spec: EmbeddingSpec) -> tuple[ElmoEmbedder, LayerMode]:
    """The embedder of ``spec`` and its layer mode: the one way ``flair-elmo embed`` and every
    corpus actor build it (vocabulary cached, precision checked against the device).

    Raises:
        UsageError: CUDA not available for ``cuda_device``, a precision the device cannot serve,
            a bad vocabulary file or layer selection.
    """
    from flair_elmo_modes.embedder import ElmoEmbedder
    from flair_elmo_modes.models import load_model

    cuda_device = _check_cuda_device(spec.cuda_device)
    files, mode, vocabulary = spec.check()
    bilm = load_model(files)
    try:
        embedder = ElmoEmbedder(bilm=bilm, cuda_device=cuda_device, stateful=spec.stateful, precision=spec.precision)
    except ValueError as error:  # a precision this device cannot serve
        raise UsageError(f"--precision {spec.precision}: {error}") from None
    if vocabulary is not None:
        embedder.cache_tokens(vocabulary)
    return embedder, mode


def _check_cuda_device(index: int) -> int:
    if index < 0:
        return -1
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--cuda-device {index}: CUDA is not available (use -1 for the CPU)")
    if index >= torch.cuda.device_count():
        raise UsageError(f"--cuda-device {index}: only {torch.cuda.device_count()} CUDA device(s) found")
    return index


def read_vocabulary(path: Path) -> list[str]:
    """The tokens of a vocabulary file: the first whitespace-separated field of every non-blank line.

    One token per line as in allennlp's ``tokens.txt`` and bilm-tf's vocabularies; a second field
    (a count) is ignored.

    Raises:
        UsageError: the file is missing, unreadable, not UTF-8 or holds no token.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"--vocab-path: vocabulary file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"--vocab-path {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise UsageError(f"--vocab-path {path}: {error.strerror or error}") from None
    tokens = [fields[0] for fields in (line.split() for line in text.splitlines()) if fields]
    if not tokens:
        raise UsageError(f"--vocab-path {path}: no tokens (expected one token per line)")
    return tokens


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SORT_BATCHES",
    "EmbeddingSpec",
    "build_embedder",
    "check_settings",
    "model_from_flags",
    "read_vocabulary",
]
