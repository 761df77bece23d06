"""`streamer simulate`'s engine: run Scenarios for one or more audience sizes, add the fluid bound.

The swarm core and the network model are streamer.swarm and streamer.sim (virtual time, so
10,000 peers run on one core); this module only runs the scenario and interprets the result.
Rules: a run is fully determined by its Scenario, seed included; figures come from
`SimResult.summary()`, never assumed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from streamer.bench.figures import fluid_bound_rate_bps
from streamer.sim import Scenario, run_scenario

Progress = Callable[[str], None]

SIMULATE_DEFAULTS = Scenario(
    peers=100,
    duration_s=60.0,
    loss_rate=0.005,
    leave_share=0.05,
    download_only_share=0.15,
    peer_upload_ratio=(0.5, 3.0),
)
"""The mix `streamer simulate` runs unless told otherwise (its options' defaults): some loss and
churn, viewers behind NATs no one can reach, uplinks from half to three times the stream rate, and
everyone joining within the first third of the run."""


def fluid_bound_ratio(sc: Scenario) -> float:
    """The fluid model's max stream rate for this audience, as a multiple of the stream rate,
    from the expected uplinks (`simulate` reports the bound of the uplinks actually drawn).

    Uses the expected uplink sum (mean of the uniform range times the uploading share); >= 1
    means the swarm has, in aggregate, enough upload to carry the stream to everyone.
    """
    low, high = sc.peer_upload_ratio
    mean_uploader = (low + high) / 2
    uploads = [mean_uploader * (1 - sc.download_only_share)] * sc.peers
    uploads += [sc.relay_upload_ratio] * sc.relays
    return fluid_bound_rate_bps(sc.source_upload_ratio, uploads, sc.peers + sc.relays)


def simulate(
    sc: Scenario,
    progress: Progress | None = None,
    report_every_s: float = 2.0,
) -> dict[str, Any]:
    """Run one scenario; its summary plus the fluid bound. Progress every report_every_s of
    wall time, reported from the event loop itself (every 10,000 events, if that long has
    passed), not from a ticker thread: the compiled core rarely lets another thread run.
    """
    if sc.peers < 1:
        raise ValueError("peers must be at least 1")
    started = time.perf_counter()
    last_report = [started]

    def reached(now_s: float) -> None:
        wall = time.perf_counter()
        if progress is not None and wall - last_report[0] >= report_every_s:
            last_report[0] = wall
            progress(
                f"simulate: {sc.peers} peers, {now_s:.1f} of {sc.duration_s:g} s "
                f"virtual, {wall - started:.0f} s wall..."
            )

    result = run_scenario(sc, reached)
    summary = result.summary()
    summary["fluid_bound_ratio"] = fluid_bound_rate_bps(
        sc.source_upload_ratio,
        list(result.upload_ratios.values()),
        len(result.upload_ratios),
    )
    summary["fluid_bound_ratio_expected"] = fluid_bound_ratio(sc)
    summary["viewers_left"] = len(result.left)
    return summary


def sweep(
    sizes: Sequence[int], sc: Scenario, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """`simulate` sc for each audience size, in order (the join window is the same for all)."""
    return [simulate(replace(sc, peers=n), progress) for n in sizes]


def settings_json(sc: Scenario) -> dict[str, Any]:
    """The settings a `--json` report records, under the names it has always used."""
    return {
        "duration_s": sc.duration_s,
        "seed": sc.seed,
        "stream_rate_bps": sc.stream_rate_bps,
        "chunk_seconds": sc.chunk_duration_s,
        "latency_s": sc.latency_s,
        "loss_rate": sc.loss_rate,
        "churn_share": sc.leave_share,
        "download_only_share": sc.download_only_share,
        "upload_ratio_range": sc.peer_upload_ratio,
        "source_upload_ratio": sc.source_upload_ratio,
        "relays": sc.relays,
        "relay_upload_ratio": sc.relay_upload_ratio,
        "join_window_s": sc.join_window_s,
        "servers_down_s": sc.tracker_down_s,
    }


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
