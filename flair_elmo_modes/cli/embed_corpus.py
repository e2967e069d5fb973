"""``flair-elmo embed-corpus``: many shards of text -> one ``flair-elmo embed`` HDF5 file each, on Ray.

The command reads its arguments into :class:`~flair_elmo_modes.corpus.EmbedSettings` and runs
:func:`~flair_elmo_modes.corpus.embed_corpus`; Ray is imported only then (the extra
``flair-elmo-modes[ray]``), so ``--help`` works without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flair_elmo_modes.cli.common import add_model_arguments, examples, positive_int
from flair_elmo_modes.cli.embed import add_layer_arguments, add_output_arguments
from flair_elmo_modes.cli.interrupts import Interrupts
from flair_elmo_modes.hdf5_output import DEFAULT_SORT_BATCHES
from flair_elmo_modes.models import DEFAULT_MODEL

if TYPE_CHECKING:
    from flair_elmo_modes.corpus import EmbedSettings

DESCRIPTION = """\
Embed a corpus: every input shard (a text file, one whitespace-tokenized sentence per line)
becomes OUTPUT_DIR/<shard name without extension>.hdf5 in exactly the layout of
`flair-elmo embed` (same flags, and on the CPU the same vectors: bit for bit with as many torch
threads per worker as the embed run, to float32 rounding otherwise), written by a
pool of Ray Data actors that each load the biLM once. Needs: pip install 'flair-elmo-modes[ray]'.

Without --address the command starts a local Ray cluster for the job; with --address it joins
a running one (`ray start --head` on one machine, `ray start --address=HEAD:6379` on the
others). Inputs and OUTPUT_DIR must then be on a filesystem every machine sees at the same path.

OUTPUT_DIR/manifest.json records per shard its input path, SHA-256, line count, model, mode,
flags and status. An output file appears only complete (written beside, renamed when done). A
rerun skips the shards recorded as complete whose input, model, mode, flags and output file
still match, and embeds the others: an interrupted job (Ctrl-C, a lost machine) resumes where
it stopped. A worker that dies is restarted by Ray and its shard embedded again. A shard with
bad input (an empty line, invalid UTF-8: named with its line) fails alone; the others are
written, and the command then exits with an error naming the failed shards."""


def _positive_float_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of GPUs such as 1 or 0.5, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more GPUs, got {value}")
    return value


def add_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "embed-corpus",
        parents=[common],
        help="embed many text shards into HDF5 files on a Ray cluster (resumable)",
        description=DESCRIPTION,
        epilog=examples(
            "flair-elmo embed-corpus corpus/ vectors/ --model en-tiny",
            "flair-elmo embed-corpus 'corpus/part-*.txt' vectors/ --workers 2 --top",
            "flair-elmo embed-corpus corpus/ vectors/ --address auto --workers 8 --gpus-per-worker 1",
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "inputs", metavar="INPUT", nargs="+", help="text files, directories (their files) or globs such as 'c/*.txt'"
    )
    parser.add_argument("output_dir", metavar="OUTPUT_DIR", type=Path, help="directory of the outputs (created)")
    add_model_arguments(parser, DEFAULT_MODEL)
    add_layer_arguments(parser)
    add_output_arguments(parser, stateful=False)  # a worker embeds many shards: no state across them
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--workers", type=positive_int, default=1, metavar="N", help="Ray actors (default 1)")
    cluster.add_argument(
        "--cpus-per-worker",
        type=positive_int,
        default=None,
        metavar="C",
        help="CPUs and torch threads per worker (default: the cluster's CPUs divided among the workers)",
    )
    cluster.add_argument(
        "--gpus-per-worker",
        type=_positive_float_or_zero,
        default=0.0,
        metavar="G",
        help="GPUs per worker, may be a fraction such as 0.5 (default 0: the CPU)",
    )
    cluster.add_argument(
        "--address",
        metavar="ADDR",
        help="join this running Ray cluster ('auto', or HEAD:6379) instead of starting a local one",
    )
    cluster.add_argument(
        "--max-attempts",
        type=positive_int,
        default=3,
        metavar="K",
        help="a shard whose worker died K times fails instead of being tried again (default 3)",
    )
    parser.add_argument("--ray-logs", action="store_true", help="show Ray's own progress bars and logs")
    parser.set_defaults(func=run, mode=None)


def settings_from_args(args: argparse.Namespace) -> EmbedSettings:
    """The :class:`~flair_elmo_modes.corpus.EmbedSettings` of parsed ``embed-corpus`` arguments."""
    from flair_elmo_modes.corpus import EmbedSettings

    return EmbedSettings(
        model=args.model,
        model_format=args.model_format,
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


def run(args: argparse.Namespace) -> int:
    """``flair-elmo embed-corpus``."""
    from flair_elmo_modes.corpus import embed_corpus

    interrupts: Interrupts = getattr(args, "interrupts", None) or Interrupts()
    with interrupts.immediate():  # nothing is written while the arguments are read
        settings = settings_from_args(args)
    summary = embed_corpus(
        args.inputs,
        args.output_dir,
        settings,
        workers=args.workers,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
        address=args.address,
        progress=not args.quiet,
        file_friendly_logging=args.file_friendly_logging,
        ray_logs=args.ray_logs,
        max_attempts=args.max_attempts,
        check=interrupts.check,
    )
    if not args.quiet:
        skipped = f"; {len(summary.skipped)} complete shards skipped" if summary.skipped else ""
        print(
            f"embedded {len(summary.embedded)} shards ({summary.sentences} sentences, {summary.tokens} tokens) "
            f"into {summary.output_dir} in {summary.seconds:.1f} s{skipped}; manifest: {summary.manifest}",
            file=sys.stderr,
        )
    return 0
