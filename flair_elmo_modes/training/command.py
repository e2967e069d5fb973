"""``flair-elmo train``: arguments and entry point (wired into :mod:`flair_elmo_modes.cli`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.training.config import SMALL_OPTIONS, TrainConfig
from flair_elmo_modes.training.trainer import train_bilm

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  flair-elmo train train.txt --dev dev.txt --output runs/brown --epochs 3
  flair-elmo train train.txt --output runs/tiny --cell-dim 64 --projection-dim 16 --max-minutes 5
  flair-elmo train train.txt --output runs/brown      # again: resumes from runs/brown/checkpoint.pt

The text has one whitespace-tokenized sentence per line. The trained biLM is exported to
OUTPUT/model/ as options.json + weights.hdf5 (usable as --model OUTPUT/model) plus lm_head.hdf5.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` subcommand's arguments to ``parser``."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("train_file", help="training text, one whitespace-tokenized sentence per line")
    parser.add_argument("--output", "-o", required=True, help="directory for checkpoint.pt, result.json and model/")
    parser.add_argument("--dev", dest="dev_file", help="text for the dev perplexity after each epoch")
    parser.add_argument("--options", help="options.json giving the architecture (overrides the size flags below)")
    small = SMALL_OPTIONS
    arch = parser.add_argument_group("architecture (defaults: 2x512_128_512cnn_1xhighway)")
    arch.add_argument("--char-dim", type=int, default=small.char_embedding_dim, help="character embedding size")
    arch.add_argument(
        "--filters",
        default=",".join(f"{w}:{c}" for w, c in small.filters),
        help="convolutions as width:count,... (default %(default)s)",
    )
    arch.add_argument("--highway", type=int, default=small.n_highway, help="highway layers")
    arch.add_argument("--cell-dim", type=int, default=small.cell_dim, help="LSTM cells per direction")
    arch.add_argument("--projection-dim", type=int, default=small.projection_dim, help="LSTM projection size")
    arch.add_argument("--layers", type=int, default=small.n_layers, help="LSTM layers per direction")
    arch.add_argument("--clip", type=float, default=small.cell_clip, help="cell and projection clip (0: none)")
    vocab = parser.add_argument_group("vocabulary and softmax")
    vocab.add_argument("--min-count", type=int, default=1, help="rarer words become <UNK> (default 1)")
    vocab.add_argument("--max-vocab", type=int, help="at most this many output words, specials included")
    vocab.add_argument("--softmax", choices=("adaptive", "full"), default="adaptive", help="default adaptive")
    vocab.add_argument("--cutoffs", default="2000,10000", help="adaptive softmax clusters (default %(default)s)")
    vocab.add_argument(
        "--separate-softmax", action="store_true", help="one softmax per direction (default: shared, as bilm-tf)"
    )
    run = parser.add_argument_group("optimisation")
    run.add_argument("--epochs", type=int, default=1, help="default 1")
    run.add_argument("--batch-size", type=int, default=64, help="sentences per step (default 64)")
    run.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    run.add_argument("--lr-schedule", choices=("constant", "linear"), default="constant", help="default constant")
    run.add_argument("--dropout", type=float, default=0.1, help="default 0.1")
    run.add_argument("--grad-clip", type=float, default=5.0, help="max gradient norm, 0 for none (default 5)")
    run.add_argument("--seed", type=int, default=0, help="default 0")
    run.add_argument("--max-steps", type=int, help="stop after this many steps")
    run.add_argument("--max-minutes", type=float, help="stop after this much training time")
    run.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    run.add_argument("--restart", action="store_true", help="ignore an existing checkpoint and start over")
    run.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: faster than 2 when the CPU is shared)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the :class:`TrainConfig` of parsed arguments.

    Raises:
        ValueError: a malformed ``--filters`` or ``--cutoffs``, or an invalid value.
    """
    if args.options:
        options = ElmoOptions.from_json(args.options)
    else:
        options = dataclasses.replace(
            SMALL_OPTIONS,
            char_embedding_dim=args.char_dim,
            filters=_parse_filters(args.filters),
            n_highway=args.highway,
            cell_dim=args.cell_dim,
            projection_dim=args.projection_dim,
            n_layers=args.layers,
            cell_clip=args.clip,
            proj_clip=args.clip,
        )
        ElmoOptions.from_dict(options.to_dict(), source="train arguments")  # the same checks as options.json
    return TrainConfig(
        train_file=args.train_file,
        output_dir=args.output,
        dev_file=args.dev_file,
        options=options,
        min_count=args.min_count,
        max_vocab_size=args.max_vocab,
        softmax=args.softmax,
        cutoffs=_parse_ints(args.cutoffs, "--cutoffs"),
        share_softmax=not args.separate_softmax,
        dropout=args.dropout,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        grad_clip=args.grad_clip,
        seed=args.seed,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        checkpoint_every=args.checkpoint_every,
        resume=not args.restart,
        num_threads=args.threads,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    """Train, export, print the result as JSON on stdout; returns the exit code (0).

    Errors (missing or empty text, bad arguments, a mismatching checkpoint) propagate as
    ``FileNotFoundError`` / ``ValueError`` for the CLI's error table.
    """
    result = train_bilm(config_from_args(args))
    json.dump(result.to_dict(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _parse_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from error


def _parse_filters(text: str) -> tuple[tuple[int, int], ...]:
    filters = []
    for part in text.split(","):
        width, _, count = part.partition(":")
        try:
            filters.append((int(width), int(count)))
        except ValueError as error:
            raise ValueError(f"--filters: expected width:count,... such as 1:32,2:32,3:64; got {text!r}") from error
    return tuple(filters)
