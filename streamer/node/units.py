"""Parsing of user-typed rates ("2M", "500k", "1.5Mbit") into bits per second (pure)."""

from __future__ import annotations

import re

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)(?:bit|bps|b)?(?:/s)?\s*$")
_FACTORS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}


def parse_rate_bps(text: str) -> int:
    """'2M' -> 2_000_000 (bits per second; k/M/G are powers of 1000). ValueError when malformed."""
    match = _RATE_RE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (try 500k, 2M or 1.5Mbit)")
    rate_bps = int(float(match.group(1)) * _FACTORS[match.group(2).lower()])
    if rate_bps <= 0:
        raise ValueError(f"a rate must be positive, not {text!r}")
    return rate_bps
