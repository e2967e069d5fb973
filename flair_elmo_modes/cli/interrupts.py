"""SIGINT, SIGTERM and SIGHUP: one way to stop every command, which no code can swallow.

Why the handler records the signal instead of raising: a Python signal handler runs between
two bytecodes of whatever the main thread is doing at that moment. That may be code that
catches exceptions (h5py, torch, tqdm), a destructor (where an exception is printed as
"Exception ignored" and dropped) or the ``finally`` that removes a temporary file. An exception
raised from the handler there is swallowed (one SIGTERM let ``embed`` write the whole output
and exit 0) or skips the cleanup (a SIGHUP left a partial ``.tmp``). So the handler only
assigns :attr:`Interrupts.signum`, which cannot fail and cannot be caught, and the commands
call :meth:`Interrupts.check` where stopping is safe: between batches and steps, and after the
output's fsync just before its rename. ``check`` raises :class:`Interrupted`; the record is
never cleared while the command runs, and :func:`~flair_elmo_modes.cli.main.main` checks it
once more after the command returns. A signal can delay the exit by one batch or step, but it
can never be lost. (One that arrives after the last check, when the new output is already in
place, still makes the command exit with ``128 + signal``; that output is then complete.)

Inside :meth:`Interrupts.immediate` blocks (reading input, downloading and loading a model:
nothing is being written) the handler also raises at once, so Ctrl-C need not wait for a long
download; should that exception be swallowed, the record still stops the run at the next check.

A signal the parent process ignores (``nohup`` ignores SIGHUP, a background job SIGINT) stays
ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from flair_elmo_modes.cli.errors import Interrupted

#: The signals that stop a command cleanly (SIGHUP where the platform has it).
SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Interrupts:
    """The first stopping signal a command received, and the checks that turn it into :class:`Interrupted`."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._immediate = False

    def check(self) -> None:
        """Raise :class:`Interrupted` if a signal has arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextmanager
    def immediate(self) -> Iterator[None]:
        """Inside the block a signal also raises at once: only for blocks that write nothing."""
        self.check()
        previous, self._immediate = self._immediate, True
        try:
            yield
        finally:
            self._immediate = previous
        self.check()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._immediate:
            raise Interrupted(self.signum)

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        """Handle :data:`SIGNALS` during the block and restore the previous handlers after it.

        Outside the main thread (where Python cannot set handlers) nothing is installed.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {}
        try:
            for signum in SIGNALS:
                handler = signal.getsignal(signum)
                if handler is not signal.SIG_IGN:
                    previous[signum] = handler
                    signal.signal(signum, self._handle)
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
