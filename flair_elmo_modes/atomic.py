"""Atomic file output: write beside the target, make it durable, rename only on success.

Every file this package writes goes through :func:`atomic_path`: readers see either the old
file or the complete new one, never a half-written file, even after a crash or power loss.
Temporary files are named ``.{target name}.{8 hex digits}.tmp``, next to the target.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_TOKEN_BYTES = 4  # 8 hex digits in the temporary name


def _temp_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.name)}\.[0-9a-f]{{{2 * _TOKEN_BYTES}}}\.tmp")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target``, renamed to ``target`` only if the block succeeds.

    After the block the temporary file is fsynced, renamed over ``target`` (``os.replace``) and
    the directory fsynced, so the new content survives a crash once this returns. On any
    exception (``KeyboardInterrupt`` included) the temporary file is removed and an existing
    ``target`` is left untouched. The temporary file is not created here, so writers may open it
    in exclusive mode; the block must create it.

    Raises:
        FileNotFoundError: the directory of ``target`` does not exist, or the block did not
            create the temporary file.
    """
    target = Path(target)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {target.parent}")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(_TOKEN_BYTES)}.tmp")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"writing {target}: nothing was written to the temporary file {tmp}")
        _fsync_file(tmp)
        os.replace(tmp, target)
        _fsync_directory(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write ``data`` as JSON (plus a final newline) to ``path`` through :func:`atomic_path`.

    Raises:
        ValueError: ``data`` holds NaN or an infinity (not valid JSON) or is not serialisable;
            nothing is written then.
    """
    path = Path(path)
    try:
        text = json.dumps(data, indent=indent, allow_nan=False) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: cannot write as JSON ({error})") from error
    with atomic_path(path) as tmp:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(text)


def remove_stale_temps(target: str | Path) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` may have left beside ``target`` (after a crash).

    Only names of the form ``.{target name}.{8 hex digits}.tmp`` are removed. Call it only when
    no other process is writing ``target``. Returns the removed paths, sorted.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    pattern = _temp_pattern(target)
    removed = []
    for path in sorted(target.parent.iterdir()):
        if pattern.fullmatch(path.name) and not path.is_dir():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
