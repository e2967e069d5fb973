"""Known failures of the command line: one ``error: <message>`` line and an exit code."""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any

from flair_elmo_modes.atomic import WriteError
from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.models import ModelDownloadError


class CLIError(Exception):
    """A failure whose message says it all: printed as ``error: <message>``, exit code 1."""

    exit_code = 1


class UsageError(CLIError):
    """Bad input or arguments: exit code 2."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: the run stops, cleans up and exits with ``128 + signal``.

    Raised by :meth:`~flair_elmo_modes.cli.interrupts.Interrupts.check`, never from inside a
    signal handler while files are written (see :mod:`flair_elmo_modes.cli.interrupts`).
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def format_os_error(error: OSError) -> str:
    """``path: reason`` for errors raised by ``open`` and friends, else the message."""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return str(error)


#: Marks of a failed allocation in a ``RuntimeError`` (C++ ``std::bad_alloc`` through torch or
#: h5py, torch's CPU allocator) or in the name of its type (``torch.OutOfMemoryError``).
_ALLOCATION_FAILURES = ("bad_alloc", "can't allocate memory", "out of memory", "OutOfMemoryError")


def is_allocation_failure(error: BaseException) -> bool:
    """``MemoryError``, ``torch.OutOfMemoryError`` or a ``RuntimeError`` from a failed allocation."""
    if isinstance(error, MemoryError):
        return True
    return isinstance(error, RuntimeError) and any(
        mark in f"{type(error).__name__} {error}" for mark in _ALLOCATION_FAILURES
    )


def format_allocation_failure(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    detail = f" ({lines[0][:200]})" if lines else ""
    return f"out of memory{detail}; try a smaller --batch-size"


#: Known failures, first match wins: exception type -> (exit code, message formatter).
#: Anything not listed is a bug and keeps its traceback (allocation failures excepted, below).
ERROR_TABLE: tuple[tuple[type[BaseException], int, Callable[[Any], str]], ...] = (
    (CLIError, 1, str),  # the exit code comes from the instance (UsageError: 2)
    (ElmoFileError, 2, str),
    (ModelDownloadError, 1, str),
    (WriteError, 1, str),  # "cannot write <target>: <reason>"
    (FileNotFoundError, 2, format_os_error),
    (OSError, 1, format_os_error),
    (MemoryError, 1, format_allocation_failure),
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
    if is_allocation_failure(error):
        return 1, format_allocation_failure(error)
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
