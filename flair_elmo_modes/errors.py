"""The library's own failures whose message says it all: raised by the application layer
(:mod:`~flair_elmo_modes.models`, :mod:`~flair_elmo_modes.embedding_spec`, :mod:`~flair_elmo_modes.corpus`,
:mod:`~flair_elmo_modes.training`) and mapped to ``error:`` lines and exit codes by
:mod:`flair_elmo_modes.cli.errors`, the one place that knows about exit codes.

Errors of files and writes keep their own types next to the code that raises them
(:class:`~flair_elmo_modes.bilm.errors.ElmoFileError`, :class:`~flair_elmo_modes.atomic.WriteError`).
:func:`describe_failure` gives every known failure's one-line message (for the CLI, and for a
corpus job's manifest, which records why a shard failed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flair_elmo_modes.atomic import WriteError
from flair_elmo_modes.bilm.errors import ElmoFileError


class ElmoError(Exception):
    """A failure whose message names what failed and why (the CLI prints it, exit code 1).

    Attributes:
        bad_input: the failure is the caller's input or settings, not the run (the CLI's exit
            code 2); :class:`UsageError` always, an instance may say so too (a corpus job whose
            every failure is a bad input file).
    """

    bad_input: bool = False


class UsageError(ElmoError, ValueError):
    """Bad settings, arguments or input, refused before any work (the CLI's exit code 2).

    A ``ValueError`` too, so that library callers catching ``ValueError`` for bad arguments
    (Python's convention) catch it.
    """

    bad_input = True


class ModelDownloadError(OSError):
    """A published model could not be downloaded."""


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


#: Known failures and their messages, first match wins. Anything not listed is a bug and keeps
#: its traceback (allocation failures excepted: :func:`is_allocation_failure`).
KNOWN_FAILURES: tuple[tuple[type[BaseException], Callable[[Any], str]], ...] = (
    (ElmoError, str),
    (ElmoFileError, str),
    (ModelDownloadError, str),
    (WriteError, str),  # "cannot write <target>: <reason>"
    (OSError, format_os_error),
    (MemoryError, format_allocation_failure),
)


def describe_failure(error: BaseException) -> str | None:
    """One line saying what failed, for a known failure; None for anything else (a bug)."""
    for kind, formatter in KNOWN_FAILURES:
        if isinstance(error, kind):
            return " ".join(formatter(error).split("\n"))
    if is_allocation_failure(error):
        return format_allocation_failure(error)
    return None
