"""Argument helpers shared by the subcommands: examples, numbers, model selection."""

from __future__ import annotations

import argparse

from flair_elmo_modes.catalogue import PUBLISHED_MODELS, SHIPPED_MODEL
from flair_elmo_modes.embedding_spec import model_from_flags
from flair_elmo_modes.models import FORMATS, ModelSpec


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


def model_spec(args: argparse.Namespace, default: str) -> ModelSpec:
    """The model chosen by ``--model`` or ``--options-file``/``--weight-file``, else ``default``'s."""
    return model_from_flags(
        args.model,
        getattr(args, "options_file", None),
        getattr(args, "weight_file", None),
        getattr(args, "model_format", None),
        default,
    )
