"""Atomic file output: write beside the target, make it durable, rename only on success.

Every file this package writes goes through :func:`atomic_path`: readers see either the old
file or the complete new one, never a half-written file, even after a crash or power loss.
Temporary files are named ``.{target name}.{8 hex digits}.tmp``, next to the target.

Writers that cannot cope with a failed ``write`` (HDF5 logs errors from destructors and may
crash on a full disk; ``torch.save`` reports "unexpected pos") write through
:func:`atomic_file`, whose file object never fails a write: it keeps the first error and
:class:`WriteError` names the target once the writer is done.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import h5py

_TOKEN_BYTES = 4  # 8 hex digits in the temporary name


class WriteError(OSError):
    """Writing an output file failed (disk full, an I/O error, a file size limit).

    ``str()`` is one line naming the target: ``cannot write out.hdf5: No space left on device``.
    """

    def __init__(self, target: str | Path, reason: str, code: int | None = None) -> None:
        super().__init__(code, reason, str(target))

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"

    @classmethod
    def from_error(cls, target: str | Path, error: BaseException) -> WriteError:
        """A write error naming ``target`` for ``error`` (another ``WriteError`` is renamed)."""
        if isinstance(error, OSError) and error.strerror:
            return cls(target, error.strerror, error.errno)
        lines = str(error).strip().splitlines()
        return cls(target, lines[0] if lines else type(error).__name__)


def temp_path(target: str | Path) -> Path:
    """A fresh temporary name beside ``target``: ``.{target name}.{8 hex digits}.tmp``."""
    target = Path(target)
    return target.with_name(f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp")


def _temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")


@contextmanager
def atomic_path(target: str | Path, before_commit: Callable[[], None] | None = None) -> Iterator[Path]:
    """A fresh temporary path beside ``target``, renamed to ``target`` only if the block succeeds.

    After the block the temporary file is fsynced, renamed over ``target`` (``os.replace``) and
    the directory fsynced, so the new content survives a crash once this returns. On any
    exception (``KeyboardInterrupt`` included) the temporary file is removed and an existing
    ``target`` is left untouched. The temporary file is not created here, so writers may open it
    in exclusive mode; the block must create it.

    Args:
        target: the file to write.
        before_commit: called after the fsync, just before the rename; an exception it raises
            (e.g. the CLI's ``Interrupted`` for a signal that arrived meanwhile) cancels the rename.

    Raises:
        FileNotFoundError: the directory of ``target`` does not exist, or the block did not
            create the temporary file.
        WriteError: the fsync or the rename failed.
    """
    target = Path(target)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {target.parent}")
    tmp = temp_path(target)
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"writing {target}: nothing was written to the temporary file {tmp}")
        try:
            _fsync_file(tmp)
        except OSError as error:
            raise WriteError.from_error(target, error) from error
        if before_commit is not None:
            before_commit()
        try:
            os.replace(tmp, target)
            _fsync_directory(target.parent)
        except OSError as error:
            raise WriteError.from_error(target, error) from error
    finally:
        tmp.unlink(missing_ok=True)


class GuardedFile(io.RawIOBase):
    """A binary file whose writes never fail: the first ``OSError`` is kept and later writes dropped.

    For writers that do not survive a failed write (HDF5, ``torch.save``). The content is garbage
    after an error, so :func:`atomic_file` then removes it and raises :class:`WriteError`;
    :meth:`check` lets a long writer stop early.
    """

    def __init__(self, raw: io.FileIO, target: Path) -> None:
        super().__init__()
        self._raw = raw
        self.target = target
        self.error: OSError | None = None

    def check(self) -> None:
        """Raise :class:`WriteError` if a write has failed."""
        if self.error is not None:
            raise WriteError.from_error(self.target, self.error)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self.error is None:
            try:
                while len(view):  # a raw write may be partial; HDF5's file-object driver ignores the count
                    view = view[self._raw.write(view) or 0 :]
            except OSError as error:
                self.error = error
        return size

    def readinto(self, buffer: Any) -> int:
        return self._raw.readinto(buffer) or 0

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._raw.truncate(size)
            except OSError as error:
                self.error = error
        return self._raw.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered


@contextmanager
def atomic_file(target: str | Path, before_commit: Callable[[], None] | None = None) -> Iterator[GuardedFile]:
    """:func:`atomic_path` with the temporary file opened as a :class:`GuardedFile`.

    Raises:
        WriteError: a write failed (after the block, or instead of the block's own exception,
            which a failed write often causes), or the file could not be created.
    """
    target = Path(target)
    with atomic_path(target, before_commit) as tmp:
        try:
            raw = open(tmp, "xb+", buffering=0)  # closed below, after the block
        except OSError as error:
            raise WriteError.from_error(target, error) from error
        guard = GuardedFile(raw, target)
        try:
            with raw:
                yield guard
        except Exception as error:
            if guard.error is not None:
                raise WriteError.from_error(target, guard.error) from error
            raise
        guard.check()


@contextmanager
def hdf5_file(guard: GuardedFile) -> Iterator[h5py.File]:
    """A new HDF5 file written through ``guard`` (from :func:`atomic_file`), closed after the block.

    HDF5 never sees a failed write, so it never logs errors from destructors or crashes; a
    ``RuntimeError`` of its own at close becomes a :class:`WriteError` naming the target. Wrap
    dataset writes in :func:`hdf5_errors` for the same.
    """
    import h5py

    with hdf5_errors(guard):
        handle = h5py.File(guard, "w")
    try:
        yield handle
    except BaseException:
        with suppress(RuntimeError):
            handle.close()
        raise
    with hdf5_errors(guard):
        handle.close()


@contextmanager
def hdf5_errors(guard: GuardedFile) -> Iterator[None]:
    """HDF5's ``RuntimeError`` and ``OSError`` inside the block as a :class:`WriteError` naming the target."""
    try:
        yield
    except (RuntimeError, OSError) as error:
        raise WriteError.from_error(guard.target, guard.error or error) from error


def atomic_write_json(
    path: str | Path, data: Any, indent: int | None = 2, before_commit: Callable[[], None] | None = None
) -> None:
    """Write ``data`` as JSON (plus a final newline) to ``path`` through :func:`atomic_path`.

    Raises:
        ValueError: ``data`` holds NaN or an infinity (not valid JSON) or is not serialisable;
            nothing is written then.
        WriteError: the file could not be written (disk full).
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=indent, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: cannot write as JSON ({error})") from error
    with atomic_file(path, before_commit) as handle:
        handle.write(text.encode("utf-8"))


def remove_stale_temps(target: str | Path, directories: bool = False) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` may have left beside ``target`` (after a crash).

    Only names of the form ``.{target name}.{8 hex digits}.tmp`` are removed; directories of
    that name only with ``directories`` (staging directories named by :func:`temp_path`). Call
    it only when no other process is writing ``target``. Returns the removed paths, sorted.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = _temp_pattern(target)
    removed = []
    for path in sorted(target.parent.iterdir()):
        if not pattern.fullmatch(path.name):
            continue
        if path.is_dir() and not path.is_symlink():
            if not directories:
                continue
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def publish_directory(staging: str | Path, target: str | Path) -> None:
    """Make the directory ``staging`` (named by :func:`temp_path`, beside ``target``) durable and
    rename it to ``target``, which must not exist: readers see no directory or the complete one.

    Every file and directory in ``staging`` is fsynced before the rename, the parent after it, so
    a crash never leaves a ``target`` whose files are not all written. Callers that may race for
    ``target`` hold a lock (a rename onto a non-empty directory fails).

    Raises:
        WriteError: an fsync or the rename failed; names ``target``.
    """
    staging, target = Path(staging), Path(target)
    try:
        for path in sorted(staging.rglob("*"), reverse=True):  # files before the directories holding them
            if path.is_file() and not path.is_symlink():
                _fsync_file(path)
            elif path.is_dir() and not path.is_symlink():
                _fsync_directory(path)
        _fsync_directory(staging)
        os.rename(staging, target)
        _fsync_directory(target.parent)
    except OSError as error:
        raise WriteError.from_error(target, error) from error


def _fsync_file(path: Path) -> None:
    # Windows can only flush a file opened for writing; POSIX can flush any descriptor.
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable. Windows cannot open directories; some filesystems refuse the call."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)
