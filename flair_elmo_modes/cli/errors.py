"""Known failures of the command line: one ``error: <message>`` line and an exit code."""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.models import ModelDownloadError


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


def report(error: BaseException, debug: bool) -> int:
    described = describe_error(error)
    if described is None:
        raise error
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    code, message = described
    print(f"error: {message}", file=sys.stderr)
    return code
