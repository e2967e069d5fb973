"""Atomic file output: write beside the target, rename only on success."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target``, renamed to ``target`` only if the block succeeds.

    On any exception (``KeyboardInterrupt`` included) the temporary file is removed and an
    existing ``target`` is left untouched. The temporary file is not created here, so writers
    may open it in exclusive mode.

    Raises:
        FileNotFoundError: the directory of ``target`` does not exist.
    """
    if not target.parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {target.parent}")
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
