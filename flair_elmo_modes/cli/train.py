"""``flair-elmo train``: registered here; its options and run are in :mod:`flair_elmo_modes.cli.train_command`,
imported only when the command is used (it imports torch and the training package)."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from flair_elmo_modes.errors import ElmoError, UsageError, is_allocation_failure

TRAIN_MODULE = "flair_elmo_modes.cli.train_command"


def add_command(commands: Any, common: argparse.ArgumentParser, load: bool) -> None:
    """``train`` comes from :mod:`flair_elmo_modes.cli.train_command`, imported only when asked for."""
    summary = "train a biLM and save it as options.json + weights.hdf5"
    if not load:
        commands.add_parser("train", help=summary, add_help=False)
        return
    try:
        command = importlib.import_module(TRAIN_MODULE)
    except ImportError as error:
        # a part of this package missing (the training package left out of an installation)
        missing = isinstance(error, ModuleNotFoundError) and (error.name or "").startswith("flair_elmo_modes")
        reason = "it is not part of this installation" if missing else f"importing it failed: {error}"
        raise ElmoError(f"the train command is not available: {TRAIN_MODULE} cannot be imported ({reason})") from error
    parser = commands.add_parser(
        "train",
        parents=[common],
        help=summary,
        description=(command.__doc__ or summary).strip().splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve",
    )
    command.add_arguments(parser)
    parser.set_defaults(func=_as_usage_errors(command.run))


def _as_usage_errors(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Training reports bad data and settings as ``ValueError``: show them as ``error:`` lines, exit 2.

    A failed allocation (``MemoryError``, ``std::bad_alloc`` through torch, torch's
    ``OutOfMemoryError``) becomes one line naming the options that bound a step's memory.
    """

    def run_training(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except ValueError as error:
            raise UsageError(str(error)) from error
        except (MemoryError, RuntimeError) as error:
            if not is_allocation_failure(error):
                raise
            lines = str(error).strip().splitlines()
            detail = f" ({lines[0][:200]})" if lines else ""
            raise ElmoError(
                f"out of memory while training{detail}; a step's memory grows with --batch-size "
                f"(now {getattr(args, 'batch_size', '?')}) and --max-sentence-tokens "
                f"(now {getattr(args, 'max_sentence_tokens', '?')}): lower them"
            ) from error

    return run_training
