"""Progress on stderr: a tqdm bar, or file-friendly lines (no carriage returns), or nothing."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any, TextIO

#: Seconds between two file-friendly lines.
LINE_INTERVAL = 10.0


class Progress:
    """Counts work done out of ``total`` and shows it on ``stream`` (stderr).

    Args:
        total: units of work in all.
        unit: what is counted ("sentences").
        desc: the label in front ("embedding").
        enabled: show anything at all (``--quiet`` turns it off).
        lines: instead of a bar, print one line at most every ``interval`` seconds and one at
            the end (``--file-friendly-logging``, as allennlp's: log files get no ``\\r``).
        interval: seconds between two lines.
        stream: where to write; stderr by default.
    """

    def __init__(
        self,
        total: int,
        unit: str,
        desc: str,
        enabled: bool = True,
        lines: bool = False,
        interval: float = LINE_INTERVAL,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.unit, self.desc = total, unit, desc
        self.enabled, self.lines, self.interval = enabled, lines, interval
        self.stream = sys.stderr if stream is None else stream
        self.done = 0
        self._start = self._last_line = time.perf_counter()
        self._printed = -1
        self._bar: Any = None
        if enabled and not lines:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=f" {unit}", desc=desc, file=self.stream, dynamic_ncols=True)

    def update(self, count: int) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        elif self.enabled and self.lines and time.perf_counter() - self._last_line >= self.interval:
            self._line()

    def _line(self) -> None:
        now = time.perf_counter()
        rate = self.done / max(now - self._start, 1e-9)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        print(
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({percent:.0f}%), {rate:.1f} {self.unit}/s",
            file=self.stream,
            flush=True,
        )
        self._last_line, self._printed = now, self.done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.lines and self._printed != self.done:
            self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
