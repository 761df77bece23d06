"""A one-line status for terminals: neighbours, in/out rates, buffer, playback figures.

`RateMeter` and `format_status` are pure; `StatusPrinter` rewrites one line in place on a TTY and
prints a plain line every `interval_s` otherwise (logs stay readable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO


class RateMeter:
    """Bits per second of a growing byte counter, between two samples."""

    def __init__(self) -> None:
        self._last: tuple[float, int] | None = None
        self.rate_bps = 0.0

    def sample(self, total_bytes: int, now: float) -> float:
        if self._last is not None and now > self._last[0]:
            self.rate_bps = 8 * (total_bytes - self._last[1]) / (now - self._last[0])
        self._last = (now, total_bytes)
        return self.rate_bps


def human_rate(rate_bps: float) -> str:
    if rate_bps >= 1e6:
        return f"{rate_bps / 1e6:.2f} Mbit/s"
    return f"{rate_bps / 1e3:.0f} kbit/s"


def format_status(role: str, figures: Mapping[str, Any]) -> str:
    """'relay  nbrs 5  in 1.02 Mbit/s  out 2.31 Mbit/s  buffer 3  ...' from a node's figures."""
    parts = [
        f"{role:<11}",
        f"nbrs {figures.get('neighbours', 0)}",
        f"in {human_rate(float(figures.get('in_bps', 0.0)))}",
        f"out {human_rate(float(figures.get('out_bps', 0.0)))}",
    ]
    if figures.get("buffer_chunks") is not None:
        parts.append(f"buffer {figures['buffer_chunks']}")
    if figures.get("latest_seq") is not None:
        parts.append(f"seq {figures['latest_seq']}")
    if figures.get("continuity") is not None:
        parts.append(f"cont {float(figures['continuity']):.3f}")
    if figures.get("lag_s") is not None:
        parts.append(f"lag {float(figures['lag_s']):.1f}s")
    if figures.get("relayed_neighbours"):
        parts.append(f"via TURN {figures['relayed_neighbours']}")
    if figures.get("note"):
        parts.append(str(figures["note"]))
    return "  ".join(parts)


class StatusPrinter:
    def __init__(self, stream: TextIO, interval_s: float = 10.0) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._interval_s = interval_s
        self._last_print_s: float | None = None
        self._width = 0

    def show(self, line: str, now: float) -> None:
        if self._tty:
            pad = max(0, self._width - len(line))
            self._stream.write("\r" + line + " " * pad)
            self._width = len(line)
            self._stream.flush()
        elif self._last_print_s is None or now - self._last_print_s >= self._interval_s:
            self._last_print_s = now
            self._stream.write(line + "\n")
            self._stream.flush()

    def finish(self) -> None:
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()
            self._width = 0
