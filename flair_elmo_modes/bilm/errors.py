"""Errors raised for bad ELMo files, and the one check that a path is a readable file."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class ElmoFileError(ValueError):
    """An ELMo options or weight file is malformed or does not match its options.

    The message names the file, the field or dataset, what was expected and what was found.
    """


def not_a_file(path: Path, what: str) -> OSError | ElmoFileError:
    """The error for ``path`` (described as ``what``, e.g. "ELMo weight file") not being a file,
    saying why: a symlink loop (:class:`ElmoFileError`), a directory (:class:`IsADirectoryError`),
    or nothing there, a dangling link included (:class:`FileNotFoundError`)."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return ElmoFileError(f"{what} {path}: symlink loop (a link that points back at itself)")
        return FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        return IsADirectoryError(f"{what} {path} is a directory; expected a file")
    return FileNotFoundError(f"{what} not found: {path} (not a regular file)")


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a :class:`Path` if it is a file (or a link to one); else :func:`not_a_file`'s error."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path, what)
    return path


def require_directory(path: str | Path, what: str) -> Path | None:
    """``path`` if it is a directory, None if it is not (nothing there, or a file); a symlink loop is
    :func:`not_a_file`'s :class:`ElmoFileError`."""
    path = Path(path)
    if path.is_dir():
        return path
    problem = not_a_file(path, what)
    if isinstance(problem, ElmoFileError):
        raise problem
    return None


def weights_only_refusal(error: Exception) -> str:
    """What ``torch.load(weights_only=True)`` refused, from its ``UnpicklingError``, without the advice
    to turn the guard off. torch 2.4 and later put it on a line of its own; torch 2.3 puts it after
    ``WeightsUnpickler error:`` on the line that mentions ``weights_only``."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0]
    lines = [line for line in text.splitlines() if line.strip() and "weights_only" not in line]
    return lines[0].strip() if lines else "not tensors and plain data"
