"""Input text, read one way for every command: which files some patterns name, and their lines.

``flair-elmo train`` (:mod:`flair_elmo_modes.training.shards`), ``flair-elmo embed``,
:meth:`ElmoEmbedder.embed_file <flair_elmo_modes.embedder.ElmoEmbedder.embed_file>` and
``flair-elmo embed-corpus`` read their input here:

- :func:`resolve_shards`: files, directories and globs -> the files, in order, each once;
- :func:`read_lines` (an open binary handle) and :func:`file_lines` (a path): UTF-8 bytes ->
  :class:`Line` records, split as Python's text mode splits lines, a byte order mark at the
  start dropped, bytes that are not UTF-8 named by line and column;
- :func:`text_lines`: lines already decoded (a text-mode handle) -> the same records.

What a line means is the caller's: ``embed`` embeds each line as a sentence, ``train`` splits
lines further (:func:`~flair_elmo_modes.training.shards.shard_sentences`).

Failures are :class:`TextError` (a ``ValueError``), or ``FileNotFoundError`` for a path that names
nothing; callers turn them into their own errors (the trainer's ``TrainingDataError``, the
CLI's ``UsageError``). Importing this module is cheap: no torch, no h5py.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flair_elmo_modes.bilm.errors import not_a_file

BYTE_ORDER_MARK = "\ufeff"


class TextError(ValueError):
    """Input text that cannot be read: not UTF-8, a file that cannot be opened, or patterns that
    name no file. The message names the file (and the line and column)."""


@dataclass(frozen=True)
class Line:
    """One line of the input: its 1-based number and its text without surrounding whitespace."""

    number: int
    text: str


def resolve_shards(patterns: Sequence[str | Path], what: str = "training text") -> list[Path]:
    """The files of ``patterns``, in order, each once.

    A pattern is a file, a directory (its non-hidden files, sorted by name) or a glob such as
    ``data/train-*.txt`` (``**`` spans directories; matches sorted by name). ``what`` names the
    text in messages.

    Raises:
        FileNotFoundError: a path (not a glob) names nothing.
        TextError: no pattern, a glob matching no file, or a directory without files.
    """
    if not patterns:
        raise TextError(f"no {what} given")
    shards: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise TextError(f"{path}: a directory without files; expected text shards in it")
        elif glob.has_magic(str(pattern)):
            found = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
            if not found:
                raise TextError(f"{pattern}: the pattern matches no file")
        else:
            raise not_a_file(path, what)
        shards.update(dict.fromkeys(found))
    return list(shards)


def read_lines(handle: BinaryIO, name: str | Path) -> Iterator[Line]:
    """Stream the stripped lines of UTF-8 text read from ``handle`` (opened in binary mode), as
    Python's text mode splits them.

    Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` (universal newlines, as allennlp's reader);
    a byte order mark at the start is dropped.

    Raises:
        TextError: the text is not valid UTF-8 (names ``name``, the line and the column).
    """
    number = 0
    for raw in handle:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            before = raw[: error.start].decode("utf-8")  # valid up to the first bad byte
            line = number + 1 + before.count("\r")
            column = len(before) - (before.rfind("\r") + 1) + 1
            bad = raw[error.start : error.end].hex(" ")
            raise TextError(
                f"{name}: line {line}, column {column}: invalid UTF-8 (bytes {bad}); the input must be UTF-8 text"
            ) from None
        if number == 0 and text.startswith(BYTE_ORDER_MARK):
            text = text[1:]
        if "\r" not in text and text.endswith("\n"):  # one line (most text): what the split below makes
            number += 1
            yield Line(number, text.strip())
            continue
        if text.endswith("\n"):
            pieces = text[:-1].removesuffix("\r").split("\r")
        else:  # the last line, without a newline; a final lone "\r" ends it
            pieces = text.split("\r")
            if pieces[-1] == "":
                pieces.pop()
        for piece in pieces:
            number += 1
            yield Line(number, piece.strip())


def file_lines(path: Path) -> Iterator[Line]:
    """:func:`read_lines` of the file at ``path`` (closed when the lines are read or dropped).

    Raises:
        TextError: the file cannot be opened (naming it and why), or is not valid UTF-8.
    """
    try:
        handle = path.open("rb")
    except OSError as error:
        raise TextError(f"input file {path}: {error.strerror or error}") from error
    with handle:
        yield from read_lines(handle, path)


def text_lines(texts: Iterable[str]) -> Iterator[Line]:
    """The records :func:`read_lines` makes, of lines already decoded and split (a file opened in
    text mode): numbered from 1, stripped, a byte order mark at the start of the first dropped."""
    for number, text in enumerate(texts, start=1):
        text = text.strip()
        if number == 1 and text.startswith(BYTE_ORDER_MARK):
            text = text[1:].strip()
        yield Line(number, text)
