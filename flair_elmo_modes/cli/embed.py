"""``flair-elmo embed``: a text file -> the HDF5 layout of allennlp 0.9's ``allennlp elmo``.

One float32 dataset per input line named by its 0-based index (``"0"``, ``"1"``, ...) and a
dataset ``sentence_to_index`` of shape ``(1,)`` holding the JSON ``{sentence: "index"}``. The
file is written by :func:`flair_elmo_modes.hdf5_output.write_embeddings`, as
``ElmoEmbedder.embed_file`` writes it; this module reads the input and the arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flair_elmo_modes.bilm.precision import PRECISIONS
from flair_elmo_modes.cli.common import add_model_arguments, examples, model_spec, positive_int
from flair_elmo_modes.cli.interrupts import Interrupts
from flair_elmo_modes.embedding_spec import DEFAULT_BATCH_SIZE, EmbeddingSpec, build_embedder
from flair_elmo_modes.errors import ElmoError, UsageError
from flair_elmo_modes.hdf5_output import DEFAULT_SORT_BATCHES, EmbedInputError, check_input, input_lines
from flair_elmo_modes.models import DEFAULT_MODEL
from flair_elmo_modes.progress import Progress

if TYPE_CHECKING:
    from flair_elmo_modes.layers import LayerMode

__all__ = [
    "add_command",
    "add_layer_arguments",
    "add_output_arguments",
    "embedding_spec",
    "run",
]


def _layer_list(text: str) -> tuple[int, ...]:
    try:
        indices = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices such as 0,2, got {text!r}") from None
    return indices


EMBED_DESCRIPTION = """\
Embed a text file with one sentence per line (UTF-8, tokens separated by whitespace) into an
HDF5 file with the layout of allennlp 0.9's `allennlp elmo`:
  "0", "1", ...        one float32 dataset per line (0-based), of shape
                         (L + 1, T, D) with --all (default), (T, D) with --top or --average,
                         (len(LAYERS), T, D) with --layers (the chosen layers, in that order)
                       for T tokens, L LSTM layers and D = 2 x projection_dim.
  "sentence_to_index"  shape (1,): the JSON {"stripped line": "index"}, a later duplicate wins
                       (not written with --forget-sentences or --use-sentence-keys).

The model is allennlp's default, "original" (downloaded once into flair's cache), unless
--model or --options-file/--weight-file say otherwise; --model en-tiny is the small model
shipped with this package (offline).

The output is written to a hidden temporary file beside OUTPUT and renamed only on success:
a failed run (exit code 1 for a full disk, naming OUTPUT) or an interrupted one (SIGINT,
SIGTERM or SIGHUP: exit code 128 + signal, after the current batch) leaves no partial file and
keeps an existing OUTPUT as it was; temporary files a killed run left are removed by the next.
Empty lines are an error (allennlp's rule); a UTF-8 byte order mark is ignored. allennlp's
--include-package is accepted and ignored."""


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "embed",
        parents=[common],
        help="embed a text file into an AllenNLP-compatible HDF5 file",
        description=EMBED_DESCRIPTION,
        epilog=examples(
            "flair-elmo embed sentences.txt vectors.hdf5",
            "flair-elmo embed sentences.txt vectors.hdf5 --model en-tiny",
            "flair-elmo embed sentences.txt top.hdf5 --top --batch-size 32",
            "flair-elmo embed sentences.txt chars_and_top.hdf5 --layers 0,-1",
            "flair-elmo embed sentences.txt vectors.hdf5 --model original --cuda-device 0",
            "flair-elmo embed sentences.txt vectors.hdf5 --options-file options.json --weight-file weights.hdf5",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="text file, one tokenized sentence per line")
    parser.add_argument("output", metavar="OUTPUT", type=Path, help="HDF5 file to write (replaced on success)")
    add_model_arguments(parser, DEFAULT_MODEL)
    add_layer_arguments(parser)
    add_output_arguments(parser, stateful=True)
    parser.add_argument(
        "--cuda-device", type=int, default=-1, metavar="N", help="GPU index, -1 for the CPU (default -1)"
    )
    parser.add_argument(
        "--include-package",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="accepted for allennlp command lines and ignored (with a warning): there are no plugins",
    )
    parser.set_defaults(func=run, mode=None)


def add_output_arguments(parser: argparse.ArgumentParser, stateful: bool) -> None:
    """The batching, output and progress flags of ``embed`` (and ``embed-corpus``); ``--stateful``
    only where ``stateful``."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"sentences per batch (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--use-sentence-keys",
        action="store_true",
        help="name each dataset by its sentence instead of its line index (sentences must be distinct "
        "and must not contain '/'); no sentence_to_index",
    )
    parser.add_argument("--forget-sentences", action="store_true", help="do not write sentence_to_index")
    if stateful:
        parser.add_argument(
            "--stateful",
            action="store_true",
            help="carry LSTM state from batch to batch as allennlp does (vectors then depend on batch "
            "order and size); by default every sentence starts from zero state",
        )
    parser.add_argument(
        "--sort-batches",
        type=positive_int,
        default=None,
        metavar="N",
        help="length-aware batching: batch every N * batch-size lines by length; the vectors do not change "
        f"(default {DEFAULT_SORT_BATCHES}" + ("; 1 with --stateful, which cannot sort)" if stateful else ")"),
    )
    parser.add_argument(
        "--vocab-path",
        type=Path,
        metavar="FILE",
        help="a vocabulary, one token per line (the first field of each line): its character-CNN vectors "
        "are computed once instead of in every batch; the vectors do not change",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="of the biLM's products: fp32 (default), bf16 (faster on CPUs with avx512_bf16 or amx_bf16, "
        "and GPUs; see the README for its error) or fp16 (CUDA only); the output is float32 in each",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stderr")
    parser.add_argument(
        "--file-friendly-logging",
        action="store_true",
        help="progress as a line every few seconds instead of a bar (no carriage returns: for log files)",
    )


def add_layer_arguments(parser: argparse.ArgumentParser) -> None:
    """``--all`` (default), ``--top``, ``--average`` or ``--layers``: ``args.mode`` and ``args.layers``."""
    modes = parser.add_argument_group("layers (one of)").add_mutually_exclusive_group()
    modes.add_argument(
        "--all", dest="mode", action="store_const", const="all", help="all L + 1 layers: (L + 1, T, D) (default)"
    )
    modes.add_argument("--top", dest="mode", action="store_const", const="top", help="the top layer: (T, D)")
    modes.add_argument(
        "--average", dest="mode", action="store_const", const="average", help="the mean of all layers: (T, D)"
    )
    modes.add_argument(
        "--layers",
        type=_layer_list,
        metavar="LAYERS",
        help="chosen layers, e.g. 0,2 (0 = characters; negative counts from the top): (len(LAYERS), T, D)",
    )


def _check_output(output: Path, input_path: Path) -> None:
    directory = output.parent
    if not directory.is_dir():
        raise UsageError(f"output directory does not exist: {directory}")
    if output.is_dir():
        raise UsageError(f"output {output} is a directory; expected a file name")
    if output.exists() and input_path.exists() and output.samefile(input_path):
        raise UsageError(f"output {output} is the input file")


def embedding_spec(args: argparse.Namespace) -> EmbeddingSpec:
    """The embedding settings of parsed ``embed`` arguments."""
    return EmbeddingSpec(
        model=model_spec(args, DEFAULT_MODEL),
        mode=args.mode,
        layers=None if args.layers is None else tuple(args.layers),
        batch_size=args.batch_size,
        sort_batches=args.sort_batches,
        stateful=args.stateful,
        cuda_device=args.cuda_device,
        precision=args.precision,
        vocab_path=args.vocab_path,
    )


def run(args: argparse.Namespace) -> int:
    """``flair-elmo embed``."""
    interrupts: Interrupts = getattr(args, "interrupts", None) or Interrupts()
    input_path: Path = args.input
    output: Path = args.output
    for package in args.include_package:
        print(f"warning: --include-package {package} is ignored (flair-elmo has no plugins)", file=sys.stderr)
    if not input_path.exists():
        raise UsageError(f"input file not found: {input_path}")
    if input_path.is_dir():
        raise UsageError(f"input {input_path} is a directory; expected a text file")
    _check_output(output, input_path)
    with interrupts.immediate():  # reading and loading write nothing: a signal may stop them at once
        total = check_input(input_path, args.use_sentence_keys)
        spec = embedding_spec(args)
        embedder, mode = build_embedder(spec)

    from flair_elmo_modes.hdf5_output import write_embeddings

    start = time.perf_counter()
    with Progress(total, "sentences", "embedding", enabled=not args.quiet, lines=args.file_friendly_logging) as bar:
        try:
            summary = write_embeddings(
                output,
                input_lines(input_path),
                embedder.runner,
                mode,
                batch_size=spec.batch_size,
                sort_batches=spec.batch_window,
                use_sentence_keys=args.use_sentence_keys,
                forget_sentences=args.forget_sentences,
                expected_lines=total,
                check=interrupts.check,
                progress=bar.update,
            )
        except EmbedInputError as error:
            raise ElmoError(f"{input_path} changed while it was read ({error})") from error
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(
            f"wrote {summary.sentences} sentences ({summary.tokens} tokens, {_shape_text(mode, embedder.dim)}) "
            f"to {output} in {seconds:.1f} s ({summary.sentences / max(seconds, 1e-9):.1f} sentences/s)",
            file=sys.stderr,
        )
    return 0


def _shape_text(mode: LayerMode, dim: int) -> str:
    if mode.kind in ("top", "average"):
        return f"{mode.kind}: (T, {dim})"
    count = mode.num_layers if mode.kind == "all" else len(mode.indices)
    return f"{mode.spec}: ({count}, T, {dim})"
