"""The ``flair-elmo`` entry point: the parser of all subcommands and the error handling.

Conventions (as in the huggingface_hub CLI): results on stdout, progress and logs on stderr;
known failures print one ``error: <message>`` line on stderr and exit with 2 (bad input or
usage) or 1 (anything else we expect, e.g. a failed download or a full disk); ``--debug`` adds
the traceback. SIGINT, SIGTERM and SIGHUP stop a command cleanly with ``128 + signal`` (see
:mod:`flair_elmo_modes.cli.interrupts`). Unexpected exceptions are bugs and propagate with
their traceback. Heavy modules (torch, h5py, flair) are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from flair_elmo_modes.cli import demo, embed, embed_corpus, info, train
from flair_elmo_modes.cli.common import examples
from flair_elmo_modes.cli.errors import Interrupted, report
from flair_elmo_modes.cli.interrupts import Interrupts
from flair_elmo_modes.errors import ElmoError

PROG = "flair-elmo"


def main(argv: list[str] | None = None) -> int:
    """Run the ``flair-elmo`` command line and return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        parser = build_parser(load_train=_command_name(argv) == "train")
    except ElmoError as error:  # the training module could not be imported
        return report(error, debug)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors (argparse printed them)
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    # Commands that write files check for signals where stopping is safe; the others may be
    # stopped at once (writes_files=False in their defaults).
    interrupts = args.interrupts = Interrupts()
    try:
        with (
            interrupts.installed(),
            _flair_logs_on_stderr(),
            _package_logs_on_stderr(quiet=getattr(args, "quiet", False)),
        ):
            if getattr(args, "writes_files", True):
                code = int(args.func(args))
            else:
                with interrupts.immediate():
                    code = int(args.func(args))
            interrupts.check()  # a signal after the command's last check still makes it fail
            return code
    except BaseException as error:
        if interrupts.signum is not None and not isinstance(error, Interrupted):
            # The signal came first: what failed after it is reported as the interruption it is.
            interrupted = Interrupted(interrupts.signum)
            interrupted.__context__ = error
            error = interrupted
        return report(error, getattr(args, "debug", False))


def _command_name(argv: Sequence[str]) -> str | None:
    """The subcommand: the first argument that is not an option (global options take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def build_parser(load_train: bool = False) -> argparse.ArgumentParser:
    """The argument parser; ``load_train`` imports the training module to add its options."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="ELMo contextual embeddings on a native PyTorch biLM: embed files, inspect and try models.",
        epilog=examples(
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
    embed.add_command(commands, common)
    embed_corpus.add_command(commands, common)
    info.add_command(commands, common)
    demo.add_command(commands, common)
    train.add_command(commands, common, load_train)
    return parser


class _StderrFormatter(logging.Formatter):
    """INFO lines as they are; warnings and errors prefixed like the CLI's own (``warning: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno <= logging.INFO else f"{record.levelname.lower()}: {message}"


@contextmanager
def _package_logs_on_stderr(quiet: bool) -> Iterator[None]:
    """Show this package's log lines (the trainer's dev perplexity, "resumed from", "exported") on
    stderr while a command runs; with ``--quiet`` only warnings and errors."""
    logger = logging.getLogger("flair_elmo_modes")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter("%(message)s"))
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # a root handler on stdout would garble the results
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


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
