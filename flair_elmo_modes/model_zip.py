"""Model archives: a ``.zip`` of a model directory, unpacked once into a cache directory.

The NLPL vector repository publishes ELMo models as zip archives of ``options.json``,
``model.hdf5`` and ``vocab.txt`` (the files ``simple_elmo`` reads); any model directory zipped
works the same way, its files at the top of the archive or in one folder. The archive is
unpacked into ``{cache}/{zip name}-{first 16 hex digits of its SHA-256}``: keyed by content, so
an archive replaced by another of the same name is unpacked again, and a copy elsewhere is not
(each use hashes the archive, at disk speed: less than reading the weights costs).

Unpacking is safe to run from several processes at once (a file lock beside the target) and
atomic: the files are written into a staging directory named by
:func:`~flair_elmo_modes.atomic.temp_path`, checked, made durable and renamed into place
(:func:`~flair_elmo_modes.atomic.publish_directory`), so a crash or a damaged archive leaves no
half-unpacked model. Members are checked before anything is written: no absolute names, no
``..``, no links, no encryption, no duplicates, and room for them on the disk.
"""

from __future__ import annotations

import errno
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import filelock

from flair_elmo_modes.atomic import WriteError, publish_directory, remove_stale_temps, temp_path
from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.checksums import file_sha256

ZIP_SUFFIX = ".zip"
_CHUNK = 1 << 20
#: What macOS's Finder adds to archives it makes (resource forks), never part of a model.
_MACOS_METADATA = "__MACOSX"
#: What zipfile raises for a damaged archive or member: bad structure, a CRC error, broken
#: compressed data, an early end, a compression method it lacks.
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)


def is_zip_path(path: str | Path) -> bool:
    """Whether ``path`` is a file named ``*.zip`` (any case): a model archive for :func:`unpack_model_zip`."""
    path = Path(path)
    return path.suffix.lower() == ZIP_SUFFIX and path.is_file()


def unpack_model_zip(path: str | Path, cache: str | Path, check: Callable[[Path], object] | None = None) -> Path:
    """The model directory of the zip archive ``path``, unpacked into ``cache`` on first use.

    Args:
        path: the ``.zip`` file.
        cache: the directory that holds unpacked archives (created if needed).
        check: called with the unpacked model directory before it is put in place; an
            exception it raises (e.g. "not a model directory") is raised here and nothing
            stays in the cache.

    Returns:
        The directory holding the model's files: the top of the archive, or its one folder
        when every member is inside it.

    Raises:
        ElmoFileError: the archive is damaged (not a zip, truncated, a CRC error; the message
            names the file, and the member when one is damaged), or a member is unsafe to
            unpack (absolute, ``..``, a link, encrypted, a duplicate name).
        WriteError: the cache cannot be written (the disk is too small or full).
    """
    path, cache = Path(path), Path(cache)
    target = cache / f"{path.stem}-{file_sha256(path)[:16]}"
    if target.is_dir():
        return model_root(target)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(target) + ".lock")
        lock.acquire()
    except OSError as error:
        raise WriteError.from_error(target, error) from error
    try:
        if target.is_dir():  # another process unpacked it while this one waited
            return model_root(target)
        remove_stale_temps(target, directories=True)  # left by a crash: under the lock no one writes them
        staging = temp_path(target)
        try:
            staging.mkdir()
            _extract(path, staging)
            if check is not None:
                check(model_root(staging))
            publish_directory(staging, target)
        except OSError as error:
            if isinstance(error, (FileNotFoundError, WriteError)):  # a check's "not a model", or named already
                raise
            raise WriteError.from_error(target, error) from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    return model_root(target)


def model_root(directory: Path) -> Path:
    """``directory``, or its only folder when it holds nothing else (macOS's ``__MACOSX`` aside)."""
    entries = [entry for entry in directory.iterdir() if entry.name != _MACOS_METADATA]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return directory


def _extract(path: Path, staging: Path) -> None:
    """Unpack every member of the archive ``path`` into ``staging``, after checking them all."""
    try:
        archive = zipfile.ZipFile(path)
    except _DAMAGED as error:
        raise ElmoFileError(f"{path}: damaged or unreadable zip archive ({error})") from error
    with archive:
        members = checked_members(path, archive)
        needed = sum(info.file_size for info in members)
        free = shutil.disk_usage(staging).free
        if needed > free:
            raise WriteError(staging.parent, f"unpacking {path} needs {needed} bytes, {free} are free", errno.ENOSPC)
        for info in members:
            destination = staging.joinpath(*_parts(info.filename))
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(info) as source, open(destination, "xb") as out:
                    shutil.copyfileobj(source, out, _CHUNK)  # zipfile checks each member's CRC-32 at its end
            except _DAMAGED as error:
                raise ElmoFileError(
                    f"{path}: damaged or unreadable zip archive: member {info.filename!r} ({error})"
                ) from error


def checked_members(path: Path, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The archive's members, each checked to unpack inside the target as a plain file or folder.

    Raises:
        ElmoFileError: a member is absolute, leaves the target (``..``), is a link or another
            special file, is encrypted, or shares its name with another; names the archive and member.
    """
    members, seen = [], set()
    for info in archive.infolist():
        name = info.filename
        parts = _parts(name)
        problem = None
        if name.startswith(("/", "\\")) or (parts and ":" in parts[0]) or ".." in parts or "\\" in name:
            problem = "would be written outside the model directory"
        elif not parts:
            problem = "has no name"
        elif info.flag_bits & 0x1:
            problem = "is encrypted"
        elif stat.S_IFMT(info.external_attr >> 16) not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = "is a link or another special file, not a plain file"
        elif parts in seen:
            problem = "occurs twice"
        if problem is not None:
            raise ElmoFileError(f"{path}: member {name!r} {problem}; refusing to unpack the archive")
        seen.add(parts)
        if parts[0] != _MACOS_METADATA:
            members.append(info)
    return members


def _parts(name: str) -> tuple[str, ...]:
    return tuple(part for part in PurePosixPath(name).parts if part not in ("", ".", "/"))
