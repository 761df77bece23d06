"""`streamer simulate`'s engine: build Scenarios from settings, run them, add the fluid bound.

The swarm core and the network model are streamer.swarm and streamer.sim (virtual time, so
10,000 peers run on one core); this module only chooses the scenario and interprets the result.
Rules: a run is fully determined by (peers, settings), seed included; figures come from
`SimResult.summary()`, never assumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from streamer.bench.figures import fluid_bound_rate_bps
from streamer.sim import Scenario, run_scenario

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Everything but the audience size. Rates are multiples of the stream rate."""

    duration_s: float = 60.0
    seed: int = 1
    stream_rate_bps: float = 1_000_000
    chunk_seconds: float = 1.0
    latency_s: float = 0.03
    loss_rate: float = 0.005
    churn_share: float = 0.05
    """Share of viewers that leave mid-run (half with a bye, half vanishing)."""
    download_only_share: float = 0.15
    """Viewers behind NATs no one can reach: they download only."""
    upload_ratio_range: tuple[float, float] = (0.5, 3.0)
    """Uploading viewers' uplinks, uniform in this range (x stream rate)."""
    source_upload_ratio: float = 2.0
    relays: int = 0
    relay_upload_ratio: float = 10.0
    join_window_s: float | None = None
    """All viewers join within this window (default: a third of the duration)."""

    def __post_init__(self) -> None:
        low, high = self.upload_ratio_range
        if not 0 <= low <= high:
            raise ValueError("upload ratio range must be 0 <= low <= high")
        if self.duration_s <= 0 or self.chunk_seconds <= 0 or self.stream_rate_bps <= 0:
            raise ValueError("duration, chunk length and stream rate must be positive")
        for name in ("loss_rate", "churn_share", "download_only_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be within [0, 1)")
        if self.latency_s < 0 or self.source_upload_ratio <= 0 or self.relays < 0:
            raise ValueError("latency >= 0, source upload > 0 and relays >= 0 are required")


def scenario_for(peers: int, settings: SimSettings) -> Scenario:
    window_s = settings.join_window_s
    if window_s is None:
        window_s = settings.duration_s / 3
    return Scenario(
        peers=peers,
        relays=settings.relays,
        duration_s=settings.duration_s,
        stream_rate_bps=settings.stream_rate_bps,
        chunk_duration_s=settings.chunk_seconds,
        source_upload_ratio=settings.source_upload_ratio,
        peer_upload_ratio=settings.upload_ratio_range,
        relay_upload_ratio=settings.relay_upload_ratio,
        download_only_share=settings.download_only_share,
        join_stagger_s=window_s / max(1, peers + settings.relays),
        latency_s=settings.latency_s,
        loss_rate=settings.loss_rate,
        leave_share=settings.churn_share,
        seed=settings.seed,
    )


def fluid_bound_ratio(peers: int, settings: SimSettings) -> float:
    """The fluid model's max stream rate for this audience, as a multiple of the stream rate,
    from the expected uplinks (`simulate` reports the bound of the uplinks actually drawn).

    Uses the expected uplink sum (mean of the uniform range times the uploading share); >= 1
    means the swarm has, in aggregate, enough upload to carry the stream to everyone.
    """
    low, high = settings.upload_ratio_range
    mean_uploader = (low + high) / 2
    uploads = [mean_uploader * (1 - settings.download_only_share)] * peers
    uploads += [settings.relay_upload_ratio] * settings.relays
    return fluid_bound_rate_bps(settings.source_upload_ratio, uploads, peers + settings.relays)


def simulate(
    peers: int,
    settings: SimSettings,
    progress: Progress | None = None,
    report_every_s: float = 2.0,
) -> dict[str, Any]:
    """Run one scenario; its summary plus the fluid bound. Progress every report_every_s of
    wall time, reported from the event loop itself (every 10,000 events, if that long has
    passed), not from a ticker thread: the compiled core rarely lets another thread run.
    """
    if peers < 1:
        raise ValueError("peers must be at least 1")
    started = time.perf_counter()
    last_report = [started]

    def reached(now_s: float) -> None:
        wall = time.perf_counter()
        if progress is not None and wall - last_report[0] >= report_every_s:
            last_report[0] = wall
            progress(
                f"simulate: {peers} peers, {now_s:.1f} of {settings.duration_s:g} s "
                f"virtual, {wall - started:.0f} s wall..."
            )

    result = run_scenario(scenario_for(peers, settings), reached)
    summary = result.summary()
    summary["fluid_bound_ratio"] = fluid_bound_rate_bps(
        settings.source_upload_ratio,
        list(result.upload_ratios.values()),
        len(result.upload_ratios),
    )
    summary["fluid_bound_ratio_expected"] = fluid_bound_ratio(peers, settings)
    summary["viewers_left"] = len(result.left)
    return summary


def sweep(
    sizes: Sequence[int], settings: SimSettings, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """`simulate` for each audience size, in order."""
    return [simulate(n, settings, progress) for n in sizes]


def settings_json(settings: SimSettings) -> dict[str, Any]:
    return asdict(settings)


def parse_sizes(text: str) -> list[int]:
    """'10,100,1000' -> [10, 100, 1000]; ValueError for anything else."""
    sizes = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part.isdigit() or int(part) < 1:
            raise ValueError(f"not a peer count: {part!r}")
        sizes.append(int(part))
    if not sizes:
        raise ValueError("no sizes given")
    return sizes
