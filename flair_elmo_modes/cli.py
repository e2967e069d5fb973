"""The ``flair-elmo`` command line: ``embed``, ``info``, ``demo`` and ``train``.

``embed`` writes the HDF5 layout of allennlp 0.9's ``allennlp elmo`` command: one float32
dataset per input line named by its 0-based index (``"0"``, ``"1"``, ...) and a dataset
``sentence_to_index`` of shape ``(1,)`` holding the JSON ``{sentence: "index"}``.

Conventions (as in the huggingface_hub CLI): results on stdout, progress and logs on stderr;
known failures print one ``error: <message>`` line on stderr and exit with 2 (bad input or
usage) or 1 (anything else we expect, e.g. a failed download); ``--debug`` adds the traceback.
Unexpected exceptions are bugs and propagate with their traceback. Heavy modules (torch,
h5py, flair) are imported inside the commands that need them.

This is the only module that reads the environment or prints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flair_elmo_modes import models
from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.models import (
    ALIASES,
    OPTIONS_NAME,
    PUBLISHED_MODELS,
    SHIPPED_MODEL,
    WEIGHTS_NAME,
    ModelDownloadError,
    ModelFiles,
    cached_location,
)

if TYPE_CHECKING:
    import numpy as np

    from flair_elmo_modes.bilm.options import ElmoOptions
    from flair_elmo_modes.layers import LayerMode

PROG = "flair-elmo"
TRAIN_MODULE = "flair_elmo_modes.training.command"
DEFAULT_BATCH_SIZE = 64
#: At most this many line numbers are listed in one error message.
MAX_LISTED = 10

SEED_SENTENCE = "I ate an apple for breakfast"
CELL_SENTENCE = "He went to the prison cell with his cell phone to extract blood cell samples from inmates"
CELL_LABELS = ("prison cell", "cell phone", "blood cell")


# --------------------------------------------------------------------------------------------
# Errors


class CLIError(Exception):
    """A failure whose message says it all: printed as ``error: <message>``, exit code 1."""

    exit_code = 1


class UsageError(CLIError):
    """Bad input or arguments: exit code 2."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the run stops, cleans up and exits with ``128 + signal``."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def format_os_error(error: OSError) -> str:
    """``path: reason`` for errors raised by ``open`` and friends, else the message."""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


#: Known failures, first match wins: exception type -> (exit code, message formatter).
#: Anything not listed is a bug and keeps its traceback.
ERROR_TABLE: tuple[tuple[type[BaseException], int, Callable[[Any], str]], ...] = (
    (CLIError, 1, str),  # the exit code comes from the instance (UsageError: 2)
    (ElmoFileError, 2, str),
    (ModelDownloadError, 1, str),
    (FileNotFoundError, 2, format_os_error),
    (OSError, 1, format_os_error),
)


def describe_error(error: BaseException) -> tuple[int, str] | None:
    """Exit code and one-line message for a known failure, ``None`` for anything else."""
    if isinstance(error, KeyboardInterrupt):
        signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        return 128 + signum, "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    for kind, code, formatter in ERROR_TABLE:
        if isinstance(error, kind):
            code = error.exit_code if isinstance(error, CLIError) else code
            return code, " ".join(formatter(error).split("\n"))
    return None


def _report(error: BaseException, debug: bool) -> int:
    described = describe_error(error)
    if described is None:
        raise error
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    code, message = described
    print(f"error: {message}", file=sys.stderr)
    return code


# --------------------------------------------------------------------------------------------
# Entry point


def main(argv: list[str] | None = None) -> int:
    """Run the ``flair-elmo`` command line and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser(load_train=_command_name(argv) == "train")
    except CLIError as error:  # the training module could not be imported
        return _report(error, debug)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors (argparse printed them)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    try:
        with _flair_logs_on_stderr():
            return int(args.func(args))
    except BaseException as error:
        return _report(error, getattr(args, "debug", False))


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand: the first argument that is not an option (global options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(load_train: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``load_train`` imports the training module to add its options."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="ELMo contextual embeddings on a native PyTorch biLM: embed files, inspect and try models.",
        epilog=_examples(
            "flair-elmo embed sentences.txt vectors.hdf5",
            "flair-elmo info en-tiny",
            "flair-elmo demo",
            "flair-elmo embed --help",
        )
        + "\nErrors print 'error: <message>' (exit code 2 for bad input, 1 otherwise); add --debug for the traceback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from flair_elmo_modes import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback of errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_embed(commands, common)
    _add_info(commands, common)
    _add_demo(commands, common)
    _add_train(commands, common, load_train)
    return parser


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _layer_list(text: str) -> tuple[int, ...]:
    try:
        indices = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices such as 0,2, got {text!r}") from None
    return indices


@contextmanager
def _flair_logs_on_stderr() -> Iterator[None]:
    """Flair logs to stdout; while a command runs, send its logs to stderr so stdout stays parseable."""
    moved = []
    if "flair" in sys.modules:
        for handler in logging.getLogger("flair").handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and stream in (sys.stdout, sys.__stdout__):
                moved.append((handler, handler.setStream(sys.stderr)))
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


# --------------------------------------------------------------------------------------------
# Models


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (default: the shipped model, offline)")
    group.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help=f"a shipped model ({SHIPPED_MODEL}), a published AllenNLP model ({', '.join(PUBLISHED_MODELS)}; "
        "downloaded once into flair's cache), or a directory with options.json and weights.hdf5",
    )
    group.add_argument("--options-file", metavar="F", help="an options.json (path or URL); needs --weight-file")
    group.add_argument("--weight-file", metavar="W", help="a weights.hdf5 (path or URL); needs --options-file")


def _resolve_model(args: argparse.Namespace) -> ModelFiles:
    """The model files chosen by ``--model`` or ``--options-file``/``--weight-file``."""
    from flair_elmo_modes.models import resolve_model

    options_file, weight_file = getattr(args, "options_file", None), getattr(args, "weight_file", None)
    if (options_file is None) != (weight_file is None):
        given = "--options-file" if options_file is not None else "--weight-file"
        missing = "--weight-file" if options_file is not None else "--options-file"
        raise UsageError(f"{given} needs {missing} too (or use --model)")
    if options_file is not None and args.model is not None:
        raise UsageError("give --model or --options-file/--weight-file, not both")
    model = args.model if args.model is not None or options_file is not None else SHIPPED_MODEL
    try:
        return resolve_model(model, options_file, weight_file)
    except ValueError as error:  # an unknown name
        if model == SHIPPED_MODEL and options_file is None:
            raise UsageError(
                f"the shipped model {SHIPPED_MODEL!r} is not installed "
                f"(no {models.SHIPPED_DIR / SHIPPED_MODEL / OPTIONS_NAME}); "
                "pass --model with a model directory or a published model name"
            ) from error
        raise UsageError(str(error)) from error


def _cuda_device(index: int) -> int:
    if index < 0:
        return -1
    import torch

    if not torch.cuda.is_available():
        raise UsageError(f"--cuda-device {index}: CUDA is not available (use -1 for the CPU)")
    if index >= torch.cuda.device_count():
        raise UsageError(f"--cuda-device {index}: only {torch.cuda.device_count()} CUDA device(s) found")
    return index


# --------------------------------------------------------------------------------------------
# embed

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


def _add_embed(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "embed",
        parents=[common],
        help="embed a text file into an AllenNLP-compatible HDF5 file",
        description=EMBED_DESCRIPTION,
        epilog=_examples(
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
    _add_model_arguments(parser)
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
        type=_positive_int,
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
        "--cuda-device", type=int, default=-1, metavar="N", help="GPU index, -1 for the CPU (default -1)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary on stderr")
    parser.set_defaults(func=run_embed, mode=None)


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
def atomic_output(target: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target``, renamed to ``target`` only if the block succeeds.

    On any exception (including ``KeyboardInterrupt``) the temporary file is removed and an
    existing ``target`` is left untouched.
    """
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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


def select_output(layers: np.ndarray, mode: LayerMode) -> np.ndarray:
    """What ``embed`` stores for one sentence.

    Args:
        layers: ``(L + 1, T, D)`` float32, as :meth:`ElmoEmbedder.embed_sentence` returns.
        mode: ``all``, ``top``, ``average`` or a list of layers.

    Returns:
        ``(L + 1, T, D)``, ``(T, D)``, ``(T, D)`` or ``(len(indices), T, D)``; layers stay
        stacked (not concatenated as in the Flair embeddings), as in allennlp's file.
    """
    import numpy as np

    if mode.kind == "all":
        return layers
    if mode.kind == "top":
        return layers[-1]
    if mode.kind == "average":
        return np.average(layers, axis=0)  # allennlp's float32 mean
    if mode.kind == "layers":
        return layers[list(mode.indices)]
    raise ValueError(f"embed has no output mode {mode.spec!r}")


def run_embed(args: argparse.Namespace) -> int:
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
    files = _resolve_model(args)

    import h5py
    from tqdm import tqdm

    from flair_elmo_modes.bilm.options import ElmoOptions
    from flair_elmo_modes.embedder import ElmoEmbedder

    mode = _layer_mode(args, ElmoOptions.from_json(files.options_file))
    embedder = ElmoEmbedder(files.options_file, files.weight_file, cuda_device=cuda_device, stateful=args.stateful)
    keep_index = not (args.forget_sentences or args.use_sentence_keys)
    sentence_to_index: dict[str, str] = {}
    tokens = 0
    start = time.perf_counter()
    with _sigterm_interrupts(), atomic_output(output) as tmp:
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
            lines = read_lines(input_path)
            index = 0
            while batch := list(islice(lines, args.batch_size)):
                arrays = embedder.embed_batch([line.text.split() for line in batch])
                for line, layers in zip(batch, arrays, strict=True):
                    key = line.text if args.use_sentence_keys else str(index)
                    data = select_output(layers, mode)
                    handle.create_dataset(key, data.shape, dtype="float32", data=data)
                    if keep_index:
                        sentence_to_index[line.text] = key
                    tokens += layers.shape[1]
                    index += 1
                progress.update(len(batch))
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


# --------------------------------------------------------------------------------------------
# info

#: bilm-tf's naming of published files: 2x4096_512_2048cnn_2xhighway = 2 layers of 4096 cells,
#: projection 512, 2048 CNN channels, 2 highway layers.
_ARCHITECTURE_NAME = re.compile(r"(\d+)x(\d+)_(\d+)_(\d+)cnn_(\d+)xhighway")


def _add_info(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "info",
        parents=[common],
        help="show a model's architecture, files and embedding lengths",
        description="Show a model's architecture, parameter count, embedding length per layer mode and files. "
        "Never downloads: a published model not yet in flair's cache is described from its file name.",
        epilog=_examples(
            "flair-elmo info en-tiny",
            "flair-elmo info original --json",
            "flair-elmo info path/to/model_dir",
            "flair-elmo info path/to/options.json",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "model",
        metavar="MODEL_OR_OPTIONS",
        help="a shipped or published model name, a model directory, or an options.json file",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_info)


def _file_info(path: Path | None, url: str | None = None) -> dict[str, Any]:
    exists = path is not None and path.is_file()
    info: dict[str, Any] = {"path": None if path is None else str(path), "exists": exists}
    info["bytes"] = path.stat().st_size if exists and path is not None else None
    if url is not None:
        info["url"] = url
    return info


def _architecture(options: ElmoOptions) -> dict[str, Any]:
    return {
        "source": "options.json",
        "char_embedding_dim": options.char_embedding_dim,
        "filters": [list(pair) for pair in options.filters],
        "n_filters": options.n_filters,
        "n_highway": options.n_highway,
        "activation": options.activation,
        "n_characters": options.n_characters,
        "max_characters_per_token": options.max_characters_per_token,
        "lstm_layers": options.n_layers,
        "cell_dim": options.cell_dim,
        "projection_dim": options.projection_dim,
        "cell_clip": options.cell_clip,
        "proj_clip": options.proj_clip,
        "use_skip_connections": options.use_skip_connections,
    }


def count_parameters(options: ElmoOptions) -> int:
    """Parameters of the biLM built from ``options``, counted without allocating them."""
    import torch

    from flair_elmo_modes.bilm.model import ElmoBiLm

    with torch.device("meta"):
        bilm = ElmoBiLm(options)
    return sum(parameter.numel() for parameter in bilm.parameters())


def _embedding_lengths(lstm_layers: int, projection_dim: int) -> dict[str, int]:
    from flair_elmo_modes.layers import NAMED_MODES, parse_mode

    return {mode: parse_mode(mode, lstm_layers + 1).embedding_length(2 * projection_dim) for mode in NAMED_MODES}


def describe_model(spec: str) -> dict[str, Any]:
    """Everything ``info`` shows, as plain data; reads no weights and downloads nothing."""
    from flair_elmo_modes.bilm.options import ElmoOptions
    from flair_elmo_modes.models import resolve_model, shipped_models

    name = ALIASES.get(spec, spec)
    info: dict[str, Any] = {"model": name}
    options: ElmoOptions | None = None
    if name in PUBLISHED_MODELS:
        options_url, weights_url = PUBLISHED_MODELS[name]
        options_path, weights_path = cached_location(options_url, name), cached_location(weights_url, name)
        info["kind"] = "published"
        info["options_file"] = _file_info(options_path, options_url)
        info["weight_file"] = _file_info(weights_path, weights_url)
        if options_path.is_file():
            options = ElmoOptions.from_json(options_path)
        else:
            match = _ARCHITECTURE_NAME.search(options_url)
            info["architecture"] = None
            if match:
                layers, cells, projection, channels, highway = (int(group) for group in match.groups())
                info["architecture"] = {
                    "source": "file name",
                    "n_filters": channels,
                    "n_highway": highway,
                    "lstm_layers": layers,
                    "cell_dim": cells,
                    "projection_dim": projection,
                }
                info["output_layers"] = layers + 1
                info["layer_dim"] = 2 * projection
                info["embedding_length"] = _embedding_lengths(layers, projection)
            info["parameters"] = None
            return info
    else:
        path = Path(spec)
        if name in shipped_models() or path.is_dir():
            files = resolve_model(spec)
            info["model"] = files.name
            info["kind"] = "shipped" if name in shipped_models() else "local"
            options_path, weights_path = files.options_file, files.weight_file
        elif path.is_file():
            info["model"] = str(path)
            info["kind"] = "options file"
            options_path = path
            sibling = path.parent / WEIGHTS_NAME
            weights_path = sibling if sibling.is_file() else None
        else:
            raise UsageError(
                f"unknown model {spec!r}: expected one of {', '.join(shipped_models() + list(PUBLISHED_MODELS))}, "
                "a model directory, or an options.json file"
            )
        info["options_file"] = _file_info(options_path)
        info["weight_file"] = _file_info(weights_path)
        options = ElmoOptions.from_json(options_path)
    info["architecture"] = _architecture(options)
    info["output_layers"] = options.num_output_layers
    info["layer_dim"] = options.output_dim
    info["embedding_length"] = _embedding_lengths(options.n_layers, options.projection_dim)
    info["parameters"] = count_parameters(options)
    return info


def _size_text(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    size = float(count)
    for unit in ("kB", "MB", "GB"):
        size /= 1000
        if size < 1000 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def format_info(info: dict[str, Any]) -> str:
    """The text form of :func:`describe_model`'s result."""
    kinds = {"shipped": "shipped with flair-elmo-modes", "published": "published by AllenNLP", "local": "local"}
    rows = [("model", f"{info['model']} ({kinds.get(info['kind'], info['kind'])})")]
    for label, key in (("options file", "options_file"), ("weight file", "weight_file")):
        file = info[key]
        if "url" in file:
            cache = Path(file["path"])
            state = (
                f"cached at {cache}" if file["exists"] else f"not cached; downloaded on first use into {cache.parent}"
            )
            rows.append((label, f"{file['url']} ({state})"))
        elif file["path"] is None:
            rows.append((label, f"not found (expected {WEIGHTS_NAME} beside the options file)"))
        else:
            size = _size_text(file["bytes"]) if file["exists"] else "missing"
            rows.append((label, f"{file['path']} ({size})"))
    arch = info.get("architecture")
    if arch is None:
        rows.append(("architecture", "unknown until the options file is downloaded"))
    elif arch["source"] == "file name":
        rows.append(
            (
                "architecture",
                f"from the file name: {arch['n_filters']} CNN channels, {arch['n_highway']} highway layer(s), "
                f"{arch['lstm_layers']} LSTM layers of {arch['cell_dim']} cells projected to {arch['projection_dim']}",
            )
        )
    else:
        filters = " ".join(f"{width}x{count}" for width, count in arch["filters"])
        rows += [
            (
                "characters",
                f"{arch['n_characters']} ids, {arch['char_embedding_dim']}-dim embeddings, "
                f"{arch['max_characters_per_token']} per token",
            ),
            (
                "filters",
                f"{len(arch['filters'])} convolutions (width x count: {filters}) = {arch['n_filters']} channels, "
                f"{arch['activation']}",
            ),
            ("highway layers", str(arch["n_highway"])),
            (
                "LSTM",
                f"{arch['lstm_layers']} layers x 2 directions, {arch['cell_dim']} cells, projection "
                f"{arch['projection_dim']}, cell clip {arch['cell_clip']:g}, proj clip {arch['proj_clip']:g}, "
                f"skip connections {'on' if arch['use_skip_connections'] else 'off'}",
            ),
        ]
    if "output_layers" in info:
        layers = info["output_layers"]
        rows.append(("output", f"{layers} layers (0 = characters, 1..{layers - 1} = LSTM) of {info['layer_dim']}"))
    parameters = info.get("parameters")
    rows.append(("parameters", f"{parameters:,}" if parameters is not None else "unknown until downloaded"))
    if "embedding_length" in info:
        rows.append(("embedding length", ", ".join(f"{m}={n}" for m, n in info["embedding_length"].items())))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def run_info(args: argparse.Namespace) -> int:
    """``flair-elmo info``."""
    info = describe_model(args.model)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


# --------------------------------------------------------------------------------------------
# demo


def _add_demo(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="embed two sentences and show layer shapes and how context changes 'cell'",
        description=f"Embed {SEED_SENTENCE!r} and show the shape of every layer and the embedding length of "
        f"the Flair embeddings per mode; then embed {CELL_SENTENCE!r} and show the cosine similarity of its "
        "three 'cell' tokens in every layer. Layer 0 encodes characters only, so there they are identical; "
        "the LSTM layers see the context. Offline with the shipped model.",
        epilog=_examples("flair-elmo demo", "flair-elmo demo --model path/to/model_dir", "flair-elmo demo --json"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help=f"shipped or published model name, or a model directory (default {SHIPPED_MODEL})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run_demo)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    import numpy as np

    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return float(a64 @ b64 / max(float(np.linalg.norm(a64) * np.linalg.norm(b64)), 1e-12))


def demo_results(files: ModelFiles) -> dict[str, Any]:
    """Everything ``demo`` shows, as plain data."""
    from flair.data import Sentence

    from flair_elmo_modes.embedder import ElmoEmbedder
    from flair_elmo_modes.embeddings import ELMoEmbeddings

    embedder = ElmoEmbedder(files.options_file, files.weight_file)
    seed = SEED_SENTENCE.split()
    seed_layers = embedder.embed_sentence(seed)  # (L + 1, T, D)
    cell_tokens = CELL_SENTENCE.split()
    positions = [i for i, token in enumerate(cell_tokens) if token == "cell"]
    cell_layers = embedder.embed_sentence(cell_tokens)  # (L + 1, T, D)
    pairs = [(a, b) for a in range(len(positions)) for b in range(a + 1, len(positions))]
    similarity = [[_cosine(layer[positions[a]], layer[positions[b]]) for a, b in pairs] for layer in cell_layers]
    lengths = {}
    for mode in ("all", "top", "average"):  # Flair's view: one vector per token
        embeddings = ELMoEmbeddings(model=files.name, bilm=embedder.bilm, embedding_type=mode)
        sentence = Sentence(seed)
        embeddings.embed(sentence)
        vector_lengths = {len(token.get_embedding()) for token in sentence}
        if vector_lengths != {embeddings.embedding_length}:
            raise CLIError(f"embedding_length {embeddings.embedding_length} but vectors of {vector_lengths} ({mode})")
        lengths[mode] = embeddings.embedding_length
    return {
        "model": files.name,
        "options_file": str(files.options_file),
        "seed_sentence": SEED_SENTENCE,
        "layer_shapes": [list(layer.shape) for layer in seed_layers],
        "embedding_length": lengths,
        "cell_sentence": CELL_SENTENCE,
        "cell_positions": positions,
        "cell_pairs": [f"{CELL_LABELS[a]} ~ {CELL_LABELS[b]}" for a, b in pairs],
        "cell_similarity": similarity,
    }


def format_demo(results: dict[str, Any]) -> str:
    """The text form of :func:`demo_results`."""
    layers = len(results["layer_shapes"])
    names = ["characters"] + [f"LSTM {i}" for i in range(1, layers)]
    lines = [f"model: {results['model']} ({results['options_file']})", "", f"{results['seed_sentence']!r}"]
    lines += [f"  layer {i} ({names[i]}): {tuple(shape)}" for i, shape in enumerate(results["layer_shapes"])]
    lines += ["", "Flair embedding length per token:"]
    lines += [f"  {mode:<8} {length}" for mode, length in results["embedding_length"].items()]
    lines += ["", f"{results['cell_sentence']!r}", "cosine similarity of the 'cell' tokens:"]
    label_width = max(len(f"layer {i} ({n})") for i, n in enumerate(names))
    widths = [max(len(pair), 6) for pair in results["cell_pairs"]]
    lines.append(
        "  "
        + " " * label_width
        + "  "
        + "  ".join(p.rjust(w) for p, w in zip(results["cell_pairs"], widths, strict=True))
    )
    for i, row in enumerate(results["cell_similarity"]):
        cells = "  ".join(f"{value:.4f}".rjust(w) for value, w in zip(row, widths, strict=True))
        lines.append(f"  {f'layer {i} ({names[i]})':<{label_width}}  {cells}")
    lines += [
        "",
        "Layer 0 encodes each token's characters alone, so the three are identical there;",
        "the LSTM layers see the sentence, so 'cell' differs with its context.",
    ]
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    """``flair-elmo demo``."""
    results = demo_results(_resolve_model(args))
    print(json.dumps(results, indent=2) if args.json else format_demo(results))
    return 0


# --------------------------------------------------------------------------------------------
# train


def _add_train(commands: Any, common: argparse.ArgumentParser, load: bool) -> None:
    """``train`` comes from :mod:`flair_elmo_modes.training.command`, imported only when asked for."""
    summary = "train a biLM and save it as options.json + weights.hdf5"
    if not load:
        commands.add_parser("train", help=summary, add_help=False)
        return
    try:
        command = importlib.import_module(TRAIN_MODULE)
    except ImportError as error:
        missing = isinstance(error, ModuleNotFoundError) and error.name and TRAIN_MODULE.startswith(error.name)
        reason = "it is not part of this installation" if missing else f"importing it failed: {error}"
        raise CLIError(f"the train command is not available: {TRAIN_MODULE} cannot be imported ({reason})") from error
    parser = commands.add_parser(
        "train",
        parents=[common],
        help=summary,
        description=(command.__doc__ or summary).strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",
    )
    command.add_arguments(parser)
    parser.set_defaults(func=command.run)
