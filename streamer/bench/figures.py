"""Pure arithmetic shared by the bench and the simulator: percentiles, summaries, the fluid bound.

Rules: no I/O, no clocks; inputs are plain stats dicts (as `--stats-json` writes them) or numbers.
A missing figure is None, never 0, so "nobody started" is not mistaken for "instant startup".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the swarm core's definition); None for no values."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _present(stats: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [float(s[key]) for s in stats if s.get(key) is not None]


def summarise_viewers(stats: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The headline figures over viewers' stats dicts.

    Lag p50 is the median of the viewers' own medians and lag p95 the 95th percentile of their
    own 95th percentiles (the simulator's definition), so one slow viewer shows in p95. A viewer
    that never played counts as continuity 0: it stalled for the whole run.
    """
    continuity = [float(s.get("continuity") or 0.0) for s in stats]
    startup = _present(stats, "startup_s")
    from_source = sum(int(s.get("bytes_from_source") or 0) for s in stats)
    from_peers = sum(int(s.get("bytes_from_peers") or 0) for s in stats)
    received = from_source + from_peers
    return {
        "viewers_reporting": len(stats),
        "continuity_min": min(continuity) if continuity else None,
        "continuity_mean": statistics.fmean(continuity) if continuity else None,
        "viewers_below_0_99": sum(1 for c in continuity if c < 0.99),
        "startup_s_p50": percentile(startup, 0.5),
        "startup_s_max": max(startup) if startup else None,
        "lag_s_p50": percentile(_present(stats, "lag_s_p50"), 0.5),
        "lag_s_p95": percentile(_present(stats, "lag_s_p95"), 0.95),
        "peer_share": from_peers / received if received else None,
    }


def upload_ratio(bytes_uploaded: int, stream_bytes: int) -> float | None:
    """Source bytes sent per byte of stream released; None before anything was released."""
    return bytes_uploaded / stream_bytes if stream_bytes > 0 else None


def fluid_bound_rate_bps(
    source_upload_bps: float, peer_uploads_bps: Iterable[float], peers: int
) -> float:
    """The highest stream rate any scheme can deliver to every one of `peers` viewers.

    max rate = min(u_s, (u_s + sum u_i) / N) (Kumar, Liu and Ross's fluid model): the source must
    send each bit at least once, and all N viewers together receive N copies of each bit from the
    source and each other's uplinks.
    """
    if peers < 1:
        raise ValueError("peers must be at least 1")
    total_bps = source_upload_bps + sum(peer_uploads_bps)
    return min(source_upload_bps, total_bps / peers)


def mean_rate_bps(samples: Sequence[tuple[float, float]]) -> float | None:
    """Mean of (time_s, rate_bps) samples; None for none."""
    return statistics.fmean(rate for _t, rate in samples) if samples else None
