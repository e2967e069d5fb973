"""Train an ELMo biLM (forward and backward language models) and export it as options.json + weights.hdf5.

``flair-elmo train``'s arguments and entry point (registered by :mod:`flair_elmo_modes.cli.train`):
arguments -> :class:`~flair_elmo_modes.training.TrainConfig` -> :func:`~flair_elmo_modes.training.train_bilm`.
Every option that sets a :class:`TrainConfig` field takes its default (and type) from that field.
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
from flair_elmo_modes.catalogue import architecture_name
from flair_elmo_modes.errors import ElmoError
from flair_elmo_modes.training import distributed
from flair_elmo_modes.training.config import LR_SCHEDULES, PRECISIONS, SMALL_OPTIONS, TrainConfig
from flair_elmo_modes.training.lm import SOFTMAX_KINDS
from flair_elmo_modes.training.pretrained import pretrained_options
from flair_elmo_modes.training.trainer import train_bilm

logger = logging.getLogger(__name__)

EXAMPLES = """examples:
  flair-elmo train train.txt --dev dev.txt --output runs/brown --epochs 3
  flair-elmo train 'data/train-*.txt' --vocab vocab.txt --output runs/1b    # shards, streamed
  flair-elmo train train.txt --output runs/tiny --cell-dim 64 --projection-dim 16 --max-minutes 5
  flair-elmo train domain/ --init-from original --lr 1e-4 --softmax-warmup-steps 500 --output runs/bio
  torchrun --nproc_per_node 4 -m flair_elmo_modes train 'data/*.txt' --output runs/big
  flair-elmo train train.txt --output runs/brown      # again: resumes from runs/brown/checkpoint.pt

TRAIN is files, directories (their files) and globs (quote them); shards are read lazily, in an
order drawn per epoch, through a shuffle buffer. The text has one whitespace-tokenized sentence per
line; lines longer than --max-sentence-tokens are split. --vocab takes bilm-tf's vocabulary file:
one word per line, <S>, </S>, <UNK> first, then by decreasing count. The trained biLM is exported to
OUTPUT/model/ as options.json + weights.hdf5 (usable as --model OUTPUT/model) plus lm_head.hdf5.
The dev perplexity of every epoch is logged on stderr.
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
    "start and vocabulary": (
        ("init_from", "--init-from", "start the biLM from this model (name or directory): domain adaptation"),
        ("vocab_file", "--vocab", "output words in bilm-tf's format (default: counted in the training text)"),
        (
            "softmax_warmup_steps",
            "--softmax-warmup-steps",
            "the first N steps train only the softmax (for --init-from)",
        ),
    ),
    "optimisation": (
        ("epochs", "--epochs", "passes over the training text"),
        ("batch_size", "--batch-size", "sentences per step, over all processes"),
        ("shuffle_buffer", "--shuffle-buffer", "sentences shuffled together (memory grows with it)"),
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
        ("device", "--device", "cpu, cuda, cuda:1 ... (default: CUDA when available)"),
        ("precision", "--precision", "fp32, or bf16 / fp16 mixed precision (torch.autocast)"),
    ),
}

#: Boolean TrainConfig fields (all True by default) turned off by a flag: (field, flag, help).
_SWITCHES: tuple[tuple[str, str, str], ...] = (
    ("share_softmax", "--separate-softmax", "one softmax per direction (default: shared, as bilm-tf)"),
    ("resume", "--restart", "ignore an existing checkpoint and start over"),
    ("progress", "--no-progress", "no progress bar"),
)

#: Choices of the string fields.
_CHOICES = {"softmax": SOFTMAX_KINDS, "lr_schedule": LR_SCHEDULES, "precision": PRECISIONS}

#: Size flags of the architecture: (flag, dest, ElmoOptions field, type, help).
_ARCHITECTURE: tuple[tuple[str, str, str, type, str], ...] = (
    ("--char-dim", "char_dim", "char_embedding_dim", int, "character embedding size"),
    ("--highway", "highway", "n_highway", int, "highway layers"),
    ("--cell-dim", "cell_dim", "cell_dim", int, "LSTM cells per direction"),
    ("--projection-dim", "projection_dim", "projection_dim", int, "LSTM projection size"),
    ("--layers", "layers", "n_layers", int, "LSTM layers per direction"),
    ("--clip", "clip", "cell_clip", float, "cell and projection clip (0: none)"),
)
#: The flag that sets each ElmoOptions field.
_FLAG_OF_FIELD = {name: flag for flag, _, name, _, _ in _ARCHITECTURE} | {"proj_clip": "--clip", "filters": "--filters"}


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
    parser.add_argument(
        "train_files", nargs="+", metavar="TRAIN", help="training text: files, directories or (quoted) globs"
    )
    parser.add_argument("--output", "-o", required=True, help="directory for checkpoint.pt, result.json and model/")
    parser.add_argument(
        "--dev", dest="dev_files", action="append", default=[], help="text for the dev perplexity (repeatable)"
    )
    parser.add_argument("--options", help="options.json giving the architecture (instead of the size flags below)")
    parser.add_argument(
        "--reuse-softmax",
        action="store_true",
        help="with --init-from a flair-elmo export: keep its vocabulary and softmax",
    )
    small = SMALL_OPTIONS
    arch = parser.add_argument_group(
        f"architecture (defaults: that of --init-from, else {architecture_name(small)}; flags given with "
        "--init-from must agree with its model)"
    )
    arch.add_argument("--filters", help=f"convolutions as width:count,... (default {_format_filters(small)})")
    for flag, dest, name, kind, help_text in _ARCHITECTURE:
        arch.add_argument(flag, dest=dest, type=kind, help=f"{help_text} (default {getattr(small, name)})")
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
        "--allow-changed-text",
        action="store_true",
        help="resume even though a shard or the vocabulary file changed since the checkpoint (warns; the "
        "checkpoint's vocabulary and batch plan then meet the new text)",
    )
    switches.add_argument(
        "--quiet", action="store_true", help="no progress bar and no log lines (dev perplexity, resume, export)"
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build the :class:`TrainConfig` of parsed arguments.

    Raises:
        ValueError: a malformed ``--filters`` or ``--cutoffs``, or an invalid value.
    """
    options = _options_from_args(args)
    fields = [name for options in _FIELD_OPTIONS.values() for name, _, _ in options]
    fields += [name for name, _, _ in _SWITCHES]
    values = {name: getattr(args, name) for name in fields}
    values["cutoffs"] = _parse_ints(args.cutoffs, "--cutoffs")
    values["reuse_softmax"] = args.reuse_softmax
    values["allow_changed_text"] = args.allow_changed_text
    if getattr(args, "quiet", False):
        values["progress"] = False
    return TrainConfig(
        train_files=args.train_files, output_dir=args.output, dev_files=args.dev_files, options=options, **values
    )


def _options_from_args(args: argparse.Namespace) -> ElmoOptions | None:
    """The architecture the flags give: None when no size flag is given (the default applies).

    With ``--init-from``, every size flag given must agree with that model's options.json.

    Raises:
        ValueError: a malformed flag, or a flag that disagrees with the ``--init-from`` model.
    """
    replacements = {
        name: getattr(args, dest) for _, dest, name, _, _ in _ARCHITECTURE if getattr(args, dest) is not None
    }
    if "cell_clip" in replacements:  # --clip sets both clips
        replacements["proj_clip"] = replacements["cell_clip"]
    if args.filters is not None:
        replacements["filters"] = _parse_filters(args.filters)
    if args.options:
        if replacements:
            given = sorted({_FLAG_OF_FIELD[name] for name in replacements})
            raise ValueError(f"--options gives the architecture: drop {', '.join(given)}")
        return ElmoOptions.from_json(args.options)
    if not replacements:
        return None
    if args.init_from is not None:
        _check_against_init(args.init_from, replacements)
        return None
    options = dataclasses.replace(SMALL_OPTIONS, **replacements)
    ElmoOptions.from_dict(options.to_dict(), source="train arguments")  # the same checks as options.json
    return options


def _check_against_init(model: str, replacements: dict[str, Any]) -> None:
    """Size flags given with ``--init-from`` must equal the model's options."""
    options = pretrained_options(model)
    differing = [
        f"{_FLAG_OF_FIELD[name]} {value} vs {getattr(options, name)} in {model}"
        for name, value in replacements.items()
        if getattr(options, name) != value
    ]
    if differing:
        raise ValueError(f"--init-from {model} fixes the architecture: {'; '.join(differing)}")


def _format_filters(options: ElmoOptions) -> str:
    return ",".join(f"{w}:{c}" for w, c in options.filters)


def run(args: argparse.Namespace) -> int:
    """Train, export, print the result as JSON on stdout; returns the exit code (0).

    Errors (missing or empty text, bad arguments, a mismatching checkpoint) propagate as
    ``FileNotFoundError`` / ``ValueError`` for the CLI's error table.
    """
    interrupts = getattr(args, "interrupts", None)  # set by the CLI's main
    try:
        result = train_bilm(config_from_args(args), check=None if interrupts is None else interrupts.check)
    except distributed.ProcessGroupError as error:
        raise ElmoError(str(error)) from error
    if distributed.from_environment().is_main:  # one report per run, not one per process
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
