"""Train an ELMo biLM (forward and backward language models) and export it as options.json + weights.hdf5.

``flair-elmo train``'s arguments and entry point, wired into :mod:`flair_elmo_modes.cli`. Every
option that sets a :class:`TrainConfig` field takes its default (and type) from that field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import types
import typing
from typing import Any

from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.training.config import LR_SCHEDULES, SMALL_OPTIONS, TrainConfig
from flair_elmo_modes.training.export import describe_options
from flair_elmo_modes.training.lm import SOFTMAX_KINDS
from flair_elmo_modes.training.trainer import train_bilm

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  flair-elmo train train.txt --dev dev.txt --output runs/brown --epochs 3
  flair-elmo train train.txt --output runs/tiny --cell-dim 64 --projection-dim 16 --max-minutes 5
  flair-elmo train train.txt --output runs/brown      # again: resumes from runs/brown/checkpoint.pt

The text has one whitespace-tokenized sentence per line; lines longer than --max-sentence-tokens
are split. The trained biLM is exported to OUTPUT/model/ as options.json + weights.hdf5 (usable as
--model OUTPUT/model) plus lm_head.hdf5. The dev perplexity of every epoch is logged on stderr.
SIGINT, SIGTERM or SIGHUP stop the run after the current step (exit code 128 + signal) and keep
the last complete checkpoint: run the same command again to resume.
"""


#: TrainConfig fields set by one option each: (field, flag, help). Each option's default and type
#: come from the field (see :func:`_field_option`), so the CLI and the library cannot disagree.
_FIELD_OPTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "vocabulary and softmax": (
        ("min_count", "--min-count", "rarer words become <UNK>"),
        ("max_vocab_size", "--max-vocab", "at most this many output words, specials included (default: no limit)"),
        ("softmax", "--softmax", "the softmax"),
        ("cutoffs", "--cutoffs", "adaptive softmax clusters, comma-separated"),
    ),
    "optimisation": (
        ("epochs", "--epochs", "passes over the training text"),
        ("batch_size", "--batch-size", "sentences per step"),
        (
            "max_sentence_tokens",
            "--max-sentence-tokens",
            "longer lines are split into pieces of at most this many tokens (a step's memory grows with "
            "its longest sentence; 0: no limit)",
        ),
        ("eval_batch_size", "--eval-batch-size", "sentences per batch for the dev perplexity"),
        ("lr", "--lr", "Adam learning rate"),
        ("lr_schedule", "--lr-schedule", "constant, or linear decay to lr / 10"),
        ("dropout", "--dropout", "on the token vectors and the top layer"),
        ("grad_clip", "--grad-clip", "max gradient norm, 0 for none"),
        ("seed", "--seed", "seeds weights, dropout and batch order"),
        ("max_steps", "--max-steps", "stop after this many steps (default: no limit)"),
        ("max_minutes", "--max-minutes", "stop after this much training time (default: no limit)"),
        ("checkpoint_every", "--checkpoint-every", "steps between checkpoints (0: only after each epoch)"),
        ("num_threads", "--threads", "torch threads (default: torch's own choice; 1 is often faster on a shared CPU)"),
    ),
}

#: Boolean TrainConfig fields (all True by default) turned off by a flag: (field, flag, help).
_SWITCHES: tuple[tuple[str, str, str], ...] = (
    ("share_softmax", "--separate-softmax", "one softmax per direction (default: shared, as bilm-tf)"),
    ("resume", "--restart", "ignore an existing checkpoint and start over"),
    ("progress", "--no-progress", "no progress bar"),
)

#: Choices of the string fields.
_CHOICES = {"softmax": SOFTMAX_KINDS, "lr_schedule": LR_SCHEDULES}


def _defaults() -> dict[str, Any]:
    """The default of every :class:`TrainConfig` field that has one."""
    return {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def _field_option(group: Any, name: str, flag: str, help_text: str) -> None:
    """Add the option of :class:`TrainConfig` field ``name``: default and type from the field."""
    default = _defaults()[name]
    kind = typing.get_type_hints(TrainConfig)[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # int | None -> int
        (kind,) = (arg for arg in typing.get_args(kind) if arg is not type(None))
    base = typing.get_origin(kind) or kind
    if base is tuple:  # cutoffs: comma-separated integers, parsed by config_from_args
        text = ",".join(str(value) for value in default)
        group.add_argument(flag, dest=name, default=text, metavar="N,N", help=f"{help_text} (default %(default)s)")
        return
    shown = "" if default is None else " (default %(default)s)"
    group.add_argument(
        flag, dest=name, type=base, default=default, choices=_CHOICES.get(name), help=f"{help_text}{shown}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` subcommand's arguments to ``parser``; defaults are :class:`TrainConfig`'s."""
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("train_file", help="training text, one whitespace-tokenized sentence per line")
    parser.add_argument("--output", "-o", required=True, help="directory for checkpoint.pt, result.json and model/")
    parser.add_argument("--dev", dest="dev_file", help="text for the dev perplexity after each epoch")
    parser.add_argument("--options", help="options.json giving the architecture (overrides the size flags below)")
    small = _defaults()["options"]
    arch = parser.add_argument_group(f"architecture (defaults: {describe_options(small)})")
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
    for title, options in _FIELD_OPTIONS.items():
        group = parser.add_argument_group(title)
        for name, flag, help_text in options:
            _field_option(group, name, flag, help_text)
    switches = parser.add_argument_group("switches")
    for name, flag, help_text in _SWITCHES:
        if _defaults()[name] is not True:  # a switch turns a True default off
            raise TypeError(f"TrainConfig.{name} must default to True to be switched off by {flag}")
        switches.add_argument(flag, dest=name, action="store_false", help=help_text)
    switches.add_argument(
        "--quiet", action="store_true", help="no progress bar and no log lines (dev perplexity, resume, export)"
    )


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
    fields = [name for options in _FIELD_OPTIONS.values() for name, _, _ in options]
    fields += [name for name, _, _ in _SWITCHES]
    values = {name: getattr(args, name) for name in fields}
    values["cutoffs"] = _parse_ints(args.cutoffs, "--cutoffs")
    if getattr(args, "quiet", False):
        values["progress"] = False
    return TrainConfig(
        train_file=args.train_file, output_dir=args.output, dev_file=args.dev_file, options=options, **values
    )


def run(args: argparse.Namespace) -> int:
    """Train, export, print the result as JSON on stdout; returns the exit code (0).

    Errors (missing or empty text, bad arguments, a mismatching checkpoint) propagate as
    ``FileNotFoundError`` / ``ValueError`` for the CLI's error table.
    """
    interrupts = getattr(args, "interrupts", None)  # set by the CLI's main
    result = train_bilm(config_from_args(args), check=None if interrupts is None else interrupts.check)
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
