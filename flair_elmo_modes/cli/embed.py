"""``flair-elmo embed``: a text file -> the HDF5 layout of allennlp 0.9's ``allennlp elmo``.

One float32 dataset per input line named by its 0-based index (``"0"``, ``"1"``, ...) and a
dataset ``sentence_to_index`` of shape ``(1,)`` holding the JSON ``{sentence: "index"}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flair_elmo_modes.atomic import atomic_path
from flair_elmo_modes.cli.common import add_model_arguments, examples, positive_int, resolve_model_files
from flair_elmo_modes.cli.errors import CLIError, Interrupted, UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from flair_elmo_modes.bilm.options import ElmoOptions
    from flair_elmo_modes.layers import LayerMode

DEFAULT_BATCH_SIZE = 64
# Batches read ahead and batched by length: a window of 2,048 lines at the default batch size.
DEFAULT_SORT_BATCHES = 32
#: At most this many line numbers are listed in one error message.
MAX_LISTED = 10


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

The output is written to a hidden temporary file beside OUTPUT and renamed only on success:
a failed or interrupted run leaves no partial file and keeps an existing OUTPUT as it was.
Empty lines are an error (allennlp's rule); a UTF-8 byte order mark is ignored."""


def _cuda_device(index: int) -> int:
    if index < 0:
        return -1
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--cuda-device {index}: CUDA is not available (use -1 for the CPU)")
    if index >= torch.cuda.device_count():
        raise UsageError(f"--cuda-device {index}: only {torch.cuda.device_count()} CUDA device(s) found")
    return index


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "embed",
        parents=[common],
        help="embed a text file into an AllenNLP-compatible HDF5 file",
        description=EMBED_DESCRIPTION,
        epilog=examples(
            "flair-elmo embed sentences.txt vectors.hdf5",
            "flair-elmo embed sentences.txt top.hdf5 --top --batch-size 32",
            "flair-elmo embed sentences.txt chars_and_top.hdf5 --layers 0,-1",
            "flair-elmo embed sentences.txt vectors.hdf5 --model original --cuda-device 0",
            "flair-elmo embed sentences.txt vectors.hdf5 --options-file options.json --weight-file weights.hdf5",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="text file, one tokenized sentence per line")
    parser.add_argument("output", metavar="OUTPUT", type=Path, help="HDF5 file to write (replaced on success)")
    add_model_arguments(parser)
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
        f"(default {DEFAULT_SORT_BATCHES}; 1 with --stateful, which cannot sort)",
    )
    parser.add_argument(
        "--cuda-device", type=int, default=-1, metavar="N", help="GPU index, -1 for the CPU (default -1)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stderr")
    parser.set_defaults(func=run, mode=None)


@dataclass(frozen=True)
class Line:
    """One line of the input: its 1-based number and its text without surrounding whitespace."""

    number: int
    text: str


def read_lines(path: Path) -> Iterator[Line]:
    """Stream the stripped lines of a UTF-8 file, as Python's text mode splits them.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (universal newlines, as allennlp's reader);
    a byte order mark at the start is dropped.

    Raises:
        UsageError: the file cannot be read, or is not valid UTF-8 (names line and column).
    """
    number = 0
    try:
        handle = path.open("rb")
    except OSError as error:
        raise UsageError(f"input file {path}: {error.strerror or error}") from error
    with handle:
        for raw in handle:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                before = raw[: error.start].decode("utf-8")  # valid up to the first bad byte
                line = number + 1 + before.count("\r")
                column = len(before) - (before.rfind("\r") + 1) + 1
                bad = raw[error.start : error.end].hex(" ")
                raise UsageError(
                    f"{path}: line {line}, column {column}: invalid UTF-8 (bytes {bad}); the input must be UTF-8 text"
                ) from None
            if number == 0 and text.startswith("\ufeff"):
                text = text[1:]
            if text.endswith("\n"):
                pieces = text[:-1].removesuffix("\r").split("\r")
            else:  # the last line, without a newline; a final lone "\r" ends it
                pieces = text.split("\r")
                if pieces[-1] == "":
                    pieces.pop()
            for piece in pieces:
                number += 1
                yield Line(number, piece.strip())


def _quote(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _list_lines(numbers: Sequence[int]) -> str:
    listed = ", ".join(str(n) for n in numbers[:MAX_LISTED])
    return listed + (f" and {len(numbers) - MAX_LISTED} more" if len(numbers) > MAX_LISTED else "")


def check_input(path: Path, use_sentence_keys: bool) -> int:
    """First, cheap pass over the input: the number of sentences, or a :class:`UsageError`.

    Reports every empty line, and with ``use_sentence_keys`` every repeated sentence and every
    sentence that cannot name an HDF5 dataset. Memory holds only the sentences needed for the
    duplicate check.
    """
    empty: list[int] = []
    first_seen: dict[str, int] = {}
    repeats: list[str] = []
    bad_keys: list[int] = []
    count = 0
    for line in read_lines(path):
        count += 1
        if not line.text:
            empty.append(line.number)
        elif use_sentence_keys:
            if "/" in line.text or "\x00" in line.text or line.text == ".":
                bad_keys.append(line.number)
            elif line.text in first_seen:
                repeats.append(f"line {line.number} repeats line {first_seen[line.text]} ({_quote(line.text)})")
            else:
                first_seen[line.text] = line.number
    problems = []
    if empty:
        what = "an empty line" if len(empty) == 1 else f"{len(empty)} empty lines"
        problems.append(f"{what} at line{'s' if len(empty) > 1 else ''} {_list_lines(empty)}; remove them")
    if repeats:
        listed = ", ".join(repeats[:MAX_LISTED]) + (
            f" and {len(repeats) - MAX_LISTED} more" if len(repeats) > MAX_LISTED else ""
        )
        problems.append(f"--use-sentence-keys needs distinct sentences, but {listed}")
    if bad_keys:
        problems.append(
            f"--use-sentence-keys: line{'s' if len(bad_keys) > 1 else ''} {_list_lines(bad_keys)} cannot name "
            "an HDF5 dataset ('/' separates groups, NUL ends a name, '.' is the file itself)"
        )
    if repeats or bad_keys:
        problems.append("drop --use-sentence-keys to name datasets by line index")
    if problems:
        raise UsageError(f"{path}: " + "; ".join(problems))
    if count == 0:
        raise UsageError(f"{path}: no sentences (the file is empty)")
    return count


def _check_output(output: Path, input_path: Path) -> None:
    directory = output.parent
    if not directory.is_dir():
        raise UsageError(f"output directory does not exist: {directory}")
    if output.is_dir():
        raise UsageError(f"output {output} is a directory; expected a file name")
    if output.exists() and input_path.exists() and output.samefile(input_path):
        raise UsageError(f"output {output} is the input file")


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into :class:`Interrupted` so the temporary output is cleaned up, as on Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _layer_mode(args: argparse.Namespace, options: ElmoOptions) -> LayerMode:
    from flair_elmo_modes.layers import parse_mode

    num_layers = options.num_output_layers
    if args.layers is None:
        return parse_mode(args.mode or "all", num_layers)
    spec = ",".join(str(i) for i in args.layers)
    bad = [i for i in args.layers if not -num_layers <= i < num_layers]
    if bad:
        raise UsageError(
            f"--layers {spec}: layer {bad[0]} is out of range; this model has {num_layers} layers "
            f"(0 = characters, 1..{num_layers - 1} = LSTM; -1 is the top)"
        )
    return parse_mode(spec, num_layers)


def select_output(layers: torch.Tensor, mode: LayerMode) -> np.ndarray:
    """What ``embed`` stores for one sentence.

    Args:
        layers: ``(L + 1, T, D)`` float32 biLM layers.
        mode: ``all``, ``top``, ``average`` or a list of layers.

    Returns:
        ``(L + 1, T, D)``, ``(T, D)``, ``(T, D)`` or ``(len(indices), T, D)``; layers stay
        stacked (not concatenated as in the Flair embeddings), as in allennlp's file.
    """
    from flair_elmo_modes.layers import chosen_layers

    chosen = chosen_layers(layers, mode)  # (k, T, D)
    return (chosen[0] if mode.kind in ("top", "average") else chosen).float().cpu().numpy()


def _sort_batches(args: argparse.Namespace) -> int:
    if args.sort_batches is None:
        return 1 if args.stateful else DEFAULT_SORT_BATCHES
    if args.stateful and args.sort_batches > 1:
        raise UsageError("--sort-batches > 1 reorders lines across batch rows; --stateful needs --sort-batches 1")
    return args.sort_batches


def run(args: argparse.Namespace) -> int:
    """``flair-elmo embed``."""
    input_path: Path = args.input
    output: Path = args.output
    if not input_path.exists():
        raise UsageError(f"input file not found: {input_path}")
    if input_path.is_dir():
        raise UsageError(f"input {input_path} is a directory; expected a text file")
    _check_output(output, input_path)
    total = check_input(input_path, args.use_sentence_keys)
    cuda_device = _cuda_device(args.cuda_device)
    sort_batches = _sort_batches(args)
    files = resolve_model_files(args)

    import h5py
    from tqdm import tqdm

    from flair_elmo_modes.bilm.options import ElmoOptions
    from flair_elmo_modes.embedder import ElmoEmbedder
    from flair_elmo_modes.runner import length_sorted_windows

    mode = _layer_mode(args, ElmoOptions.from_json(files.options_file))
    embedder = ElmoEmbedder(files.options_file, files.weight_file, cuda_device=cuda_device, stateful=args.stateful)
    keep_index = not (args.forget_sentences or args.use_sentence_keys)
    sentence_to_index: dict[str, str] = {}
    tokens = 0
    start = time.perf_counter()
    with _sigterm_interrupts(), atomic_path(output) as tmp:
        try:
            handle = h5py.File(tmp, "x")
        except OSError as error:
            raise CLIError(f"cannot create a file in {output.parent}: {error}") from error
        with (
            handle,
            tqdm(
                total=total,
                unit=" sentences",
                desc="embedding",
                file=sys.stderr,
                disable=args.quiet,
                dynamic_ncols=True,
            ) as progress,
        ):
            lines = ((line, line.text.split()) for line in read_lines(input_path))
            index = 0  # of the window's first line
            windows = length_sorted_windows(lines, lambda item: len(item[1]), args.batch_size, sort_batches)
            for items, batches in windows:
                window = [line for line, _ in items]
                keys = [line.text if args.use_sentence_keys else str(index + row) for row, line in enumerate(window)]
                for rows in batches:
                    output = embedder.runner.run([items[row][1] for row in rows])
                    lengths = output.mask.sum(dim=-1).tolist()
                    for i, row in enumerate(rows):
                        data = select_output(output.layers[:, i, : lengths[i]], mode)
                        handle.create_dataset(keys[row], data.shape, dtype="float32", data=data)
                        tokens += lengths[i]
                    progress.update(len(rows))
                if keep_index:
                    sentence_to_index.update((line.text, key) for line, key in zip(window, keys, strict=True))
                index += len(window)
            if index != total:
                raise CLIError(f"{input_path} changed while it was read ({total} lines, then {index})")
            if keep_index:
                dataset = handle.create_dataset("sentence_to_index", (1,), dtype=h5py.string_dtype())
                dataset[0] = json.dumps(sentence_to_index)
    if not args.quiet:
        seconds = time.perf_counter() - start
        print(
            f"wrote {total} sentences ({tokens} tokens, {_shape_text(mode, embedder.dim)}) to {output} "
            f"in {seconds:.1f} s ({total / max(seconds, 1e-9):.1f} sentences/s)",
            file=sys.stderr,
        )
    return 0


def _shape_text(mode: LayerMode, dim: int) -> str:
    if mode.kind in ("top", "average"):
        return f"{mode.kind}: (T, {dim})"
    count = mode.num_layers if mode.kind == "all" else len(mode.indices)
    return f"{mode.spec}: ({count}, T, {dim})"
