"""Progress on stderr: rewritten in place on a terminal, one line every `interval_s` in a log."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, interval_s: float = 5.0) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._interval_s = interval_s
        self._last_s: float | None = None
        self._width = 0

    def __call__(self, line: str) -> None:
        if self._tty:
            self._stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            now = time.monotonic()
            if self._last_s is not None and now - self._last_s < self._interval_s:
                return
            self._last_s = now
            self._stream.write(line + "\n")
        self._stream.flush()

    def note(self, line: str) -> None:
        """A line that must always show (phase changes, results)."""
        self.finish()
        self._stream.write(line + "\n")
        self._stream.flush()
        self._last_s = None

    def finish(self) -> None:
        if self._tty and self._width:
            self._stream.write("\n")
            self._width = 0
