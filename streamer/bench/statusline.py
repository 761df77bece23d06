"""Parse the status lines that broadcast/relay/watch print (streamer.node.status.format_status).

Why: a node writes its stats file only on exit, but the bench wants figures over time (the
source's upload rate, each viewer's lag) and a live progress display. Every node already prints
a status line every `--status-interval` seconds to its log, so the bench tails the logs instead
of adding a second reporting channel. Pure: text in, figures out; anything else gives None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = r"([0-9.]+) (Mbit|kbit)/s"
_LINE_RE = re.compile(
    rf"^(?P<role>broadcaster|relay|viewer)\s+nbrs (?P<nbrs>\d+)\s+"
    rf"in {_RATE}\s+out {_RATE}"
)
_CONT_RE = re.compile(r"\bcont ([0-9.]+)\b")
_LAG_RE = re.compile(r"\blag (-?[0-9.]+)s\b")


@dataclass(frozen=True, slots=True)
class Status:
    role: str
    neighbours: int
    in_bps: float
    out_bps: float
    continuity: float | None
    lag_s: float | None


def _bps(number: str, unit: str) -> float:
    return float(number) * (1e6 if unit == "Mbit" else 1e3)


def parse_status(line: str) -> Status | None:
    """The figures of one status line; None for any other line (a log record, a warning)."""
    match = _LINE_RE.match(line.strip("\r\n "))
    if match is None:
        return None
    cont = _CONT_RE.search(line)
    lag = _LAG_RE.search(line)
    try:
        return Status(
            role=match["role"],
            neighbours=int(match["nbrs"]),
            in_bps=_bps(match[3], match[4]),
            out_bps=_bps(match[5], match[6]),
            continuity=float(cont[1]) if cont else None,
            lag_s=float(lag[1]) if lag else None,
        )
    except ValueError:  # e.g. "1.2.3": a garbled line is not a status
        return None


def last_status(text: str) -> Status | None:
    """The newest status in a chunk of log text (lines may be split by '\\r' on a TTY)."""
    for line in reversed(re.split(r"[\r\n]+", text)):
        status = parse_status(line)
        if status is not None:
            return status
    return None
