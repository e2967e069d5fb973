"""Known failures of the command line: one ``error: <message>`` line and an exit code.

The error types are the library's (:mod:`flair_elmo_modes.errors` and the file, download and write
errors beside their code), and so are their messages (:func:`~flair_elmo_modes.errors.describe_failure`);
this module maps them to exit codes.
"""

from __future__ import annotations

import signal
import sys
import traceback

from flair_elmo_modes.bilm.errors import ElmoFileError
from flair_elmo_modes.errors import ElmoError, describe_failure


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP: the run stops, cleans up and exits with ``128 + signal``.

    Raised by :meth:`~flair_elmo_modes.cli.interrupts.Interrupts.check`, never from inside a
    signal handler while files are written (see :mod:`flair_elmo_modes.cli.interrupts`).
    """

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: Exit codes of known failures, first match wins: bad input 2, anything else the library knows 1.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (ElmoFileError, 2),
    (FileNotFoundError, 2),
)


def describe_error(error: BaseException) -> tuple[int, str] | None:
    """Exit code and one-line message for a known failure, ``None`` for anything else."""
    if isinstance(error, KeyboardInterrupt):
        signum = error.signum if isinstance(error, Interrupted) else signal.SIGINT
        return 128 + signum, "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
    message = describe_failure(error)
    if message is None:
        return None
    if isinstance(error, ElmoError):
        return (2 if error.bad_input else 1), message
    code = next((code for kind, code in EXIT_CODES if isinstance(error, kind)), 1)
    return code, message


def report(error: BaseException, debug: bool) -> int:
    described = describe_error(error)
    if described is None:
        raise error
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    code, message = described
    print(f"error: {message}", file=sys.stderr)
    return code
