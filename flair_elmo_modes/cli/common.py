"""Argument helpers shared by the subcommands: examples, numbers, model selection."""

from __future__ import annotations

import argparse

from flair_elmo_modes import models
from flair_elmo_modes.cli.errors import UsageError
from flair_elmo_modes.models import FORMATS, OPTIONS_NAME, PUBLISHED_MODELS, SHIPPED_MODEL, ModelFiles


def examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _default_text(default: str) -> str:
    if default == SHIPPED_MODEL:
        return f"the shipped model {SHIPPED_MODEL}, offline"
    return f"{default!r}, downloaded once into flair's cache"


def add_model_arguments(parser: argparse.ArgumentParser, default: str) -> None:
    """``--model`` and ``--options-file``/``--weight-file``; without them the command uses ``default``."""
    group = parser.add_argument_group(f"model (default: {_default_text(default)})")
    group.add_argument(
        "--model",
        metavar="NAME_OR_DIR",
        help=f"a shipped model ({SHIPPED_MODEL}), a published AllenNLP model ({', '.join(PUBLISHED_MODELS)}; "
        "downloaded once into flair's cache), a directory with options.json and weights.hdf5 (or NLPL's "
        "model.hdf5), an ELMoForManyLangs model directory (config.json, char.dic, token_embedder.pkl, "
        "encoder.pkl), or a .zip of a model directory (unpacked once into flair's cache)",
    )
    group.add_argument(
        "--model-format",
        choices=FORMATS,
        help="read the --model directory as this format only (by default told by its files)",
    )
    group.add_argument("--options-file", metavar="F", help="an options.json (path or URL); needs --weight-file")
    group.add_argument("--weight-file", metavar="W", help="a weights.hdf5 (path or URL); needs --options-file")


def resolve_model_files(args: argparse.Namespace, default: str) -> ModelFiles:
    """The model files chosen by ``--model`` or ``--options-file``/``--weight-file``, else ``default``'s."""
    from flair_elmo_modes.models import resolve_model

    options_file, weight_file = getattr(args, "options_file", None), getattr(args, "weight_file", None)
    if (options_file is None) != (weight_file is None):
        given = "--options-file" if options_file is not None else "--weight-file"
        missing = "--weight-file" if options_file is not None else "--options-file"
        raise UsageError(f"{given} needs {missing} too (or use --model)")
    if options_file is not None and args.model is not None:
        raise UsageError("give --model or --options-file/--weight-file, not both")
    model = args.model if args.model is not None or options_file is not None else default
    try:
        return resolve_model(model, options_file, weight_file, getattr(args, "model_format", None))
    except ValueError as error:  # an unknown name
        if model == SHIPPED_MODEL and options_file is None:
            raise UsageError(
                f"the shipped model {SHIPPED_MODEL!r} is not installed "
                f"(no {models.SHIPPED_DIR / SHIPPED_MODEL / OPTIONS_NAME}); "
                "pass --model with a model directory or a published model name"
            ) from error
        raise UsageError(str(error)) from error
