"""SHA-256 of files, and ``SHA256SUMS`` sidecars in ``sha256sum``'s format.

HDF5 keeps no checksum of its raw data: a flipped byte inside a weight is read as another
number, and the vectors change without an error. So the files this package writes as a model
(``flair-elmo train``'s export: ``options.json``, ``weights.hdf5``, ``lm_head.hdf5``) get their
SHA-256 in a ``SHA256SUMS`` file beside them, which ``sha256sum -c SHA256SUMS`` also checks, and
reading a file that such a sidecar lists verifies it first (:func:`verify`).

The hash is of every byte (no sampling): hashing runs at memory-bandwidth speed, faster than
reading an HDF5 file into arrays, so a full hash costs less than the load it protects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from flair_elmo_modes.atomic import atomic_file
from flair_elmo_modes.bilm.errors import ElmoFileError

SUMS_NAME = "SHA256SUMS"
_CHUNK = 1 << 20


class ChecksumError(ElmoFileError):
    """A file's bytes do not match the SHA-256 recorded for it (damaged, or changed after it was written)."""


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of the file's bytes, as 64 hex digits.

    Raises:
        OSError: the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_sums(directory: str | Path, names: Iterable[str]) -> Path:
    """Write ``directory/SHA256SUMS`` for the files ``names`` in ``directory``, atomically.

    Returns:
        The sidecar's path.
    """
    directory = Path(directory)
    lines = [f"{file_sha256(directory / name)}  {name}\n" for name in sorted(names)]
    path = directory / SUMS_NAME
    with atomic_file(path) as handle:
        handle.write("".join(lines).encode("utf-8"))
    return path


def read_sums(path: str | Path) -> dict[str, str]:
    """The file names and hex digests of a ``SHA256SUMS`` file (text or binary mode lines).

    Raises:
        ElmoFileError: a line is not ``<64 hex digits>  <name>``; names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ElmoFileError(f"{path}: cannot be read as a SHA256SUMS file ({error})") from None
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, _, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else ""  # "  name" (text mode) or " *name" (binary)
        if len(digest) != 64 or not all(c in "0123456789abcdefABCDEF" for c in digest) or not name:
            raise ElmoFileError(f"{path}: line {number} is not '<SHA-256 in hex>  <file name>': {line[:80]!r}")
        sums[name] = digest.lower()
    return sums


def verify(path: str | Path) -> bool:
    """Check ``path`` against the ``SHA256SUMS`` beside it.

    Returns:
        True if a sidecar lists the file and its bytes match; False if there is no sidecar or it
        does not list the file (nothing to check against).

    Raises:
        ChecksumError: the bytes do not match; names the file, both digests and what to do.
        ElmoFileError: the sidecar is malformed.
    """
    path = Path(path)
    sums_path = path.parent / SUMS_NAME
    if not sums_path.is_file():
        return False
    expected = read_sums(sums_path).get(path.name)
    if expected is None:
        return False
    found = file_sha256(path)
    if found != expected:
        raise ChecksumError(
            f"{path}: SHA-256 {found} does not match {expected} recorded in {sums_path}: the file is damaged or "
            "was changed after it was written; restore it (or export the model again)"
        )
    return True


def status(paths: Iterable[Path]) -> dict[str, list[str]]:
    """What :func:`verify` says of each existing file of ``paths``, without raising: the names
    ``verified``, those whose bytes ``mismatch``, and those ``unchecked`` (no sidecar lists them)."""
    result: dict[str, list[str]] = {"verified": [], "mismatch": [], "unchecked": []}
    for path in paths:
        if not path.is_file():
            continue
        try:
            key = "verified" if verify(path) else "unchecked"
        except ChecksumError:
            key = "mismatch"
        result[key].append(path.name)
    return result
