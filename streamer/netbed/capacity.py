"""Relay capacity on the test bed: one relay site, one load site, the steps of the loopback run.

The bed has four sites: infra (serve + coturn), src (the broadcaster), relay0 (the relay) and
watch0 (the load generator, `streamer loadgen`, every viewer of a step in one process). Delay,
jitter and loss are the profile's (the default realistic ones); the relay's and the load site's
uplinks are `capacity_uplink` times the stream (large: the relay's CPU, not its uplink, is
measured), no NATs. The relay's link is a data centre's like infra's (`place_relay`), where a
relay that adds upload bandwidth is run, and its viewers are the profile's middle RTT and loss
away: on a home link the relay's one association to the broadcaster is what fails first
(2026-12-07, 30 viewers: SCTP under 0.75% loss at ~130 ms RTT carried about the stream rate,
the broadcaster took 1.3 s to answer, and every viewer missed what the relay missed), which
says nothing of how many viewers it serves. `relay_link="home"` keeps the drawn links.
Each step (streamer.bench.capacity_run) restarts the relay and the load generator; the shim,
coturn, serve and the broadcaster run across steps, and their CPU over each step's window is
reported beside the relay's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streamer.bench.capacity_run import CapacityOptions, Placement, run_steps
from streamer.netbed.run import RunOptions, bed_up, in_site, start_broadcast, start_infra
from streamer.netbed.timing import LinkProfile
from streamer.netbed.topology import Bed, Profile

Progress = Callable[[str], None]
CAPACITY_UPLINK = 100.0
"""Relay and load-site uplinks in multiples of the stream: far above what a relay process sends."""


RELAY_LINKS = ("datacentre", "home")


def capacity_profile(base: Profile, capacity_uplink: float = CAPACITY_UPLINK) -> Profile:
    """The base profile's delays, loss, jitter and seed with the capacity bed's sites."""
    return Profile(
        rtt_ms=base.rtt_ms,
        loss=base.loss,
        jitter_ms=base.jitter_ms,
        uplinks=(capacity_uplink, capacity_uplink),
        source_uplink=base.source_uplink,
        uplink_queue_ms=base.uplink_queue_ms,
        relays=1,
        watchers=1,
        pages=0,
        watcher_nats=("none",),
        page_nats=base.page_nats,
        infra_rtt_ms=base.infra_rtt_ms,
        seed=base.seed,
    )


def place_relay(bed: Bed, profile: Profile, relay_link: str = "datacentre") -> Bed:
    """The capacity bed's links by where the relay runs. 'home': as build_bed drew them.
    'datacentre': the relay on infra's link, and the load site on the link that puts its viewers
    the profile's middle RTT and loss away from the relay (one site stands for every viewer: the
    middle of the range, not whatever one draw gave it)."""
    if relay_link not in RELAY_LINKS:
        raise ValueError(f"relay link must be one of {', '.join(RELAY_LINKS)}")
    if relay_link == "home":
        return bed
    centre = bed.site("infra").link
    middle_rtt_s = sum(profile.rtt_ms) / 2 / 1e3
    viewers = LinkProfile(
        delay_s=round(max(0.0, middle_rtt_s / 2 - centre.delay_s), 6),
        jitter_s=profile.jitter_ms / 1e3,
        loss=round(sum(profile.loss) / 2, 6),  # (the relay's link loses nothing)
    )
    links = {"relay0": centre, "watch0": viewers}
    sites = tuple(
        replace(site, link=links[site.name]) if site.name in links else site for site in bed.sites
    )
    return replace(bed, sites=sites)


def run_bed_capacity(
    bed: Bed, options: RunOptions, capacity: CapacityOptions, progress: Progress
) -> dict[str, Any]:
    """Build the bed, run the steps in it, destroy the bed; the delay mode and the steps."""
    with bed_up(bed, options, progress) as up:
        group = up.group
        url = start_infra(group, bed, options, up.state_dir)
        start_broadcast(group, bed, options, url)
        progress(f"netbed: server {url}, broadcasting; relay in relay0, viewers in watch0")
        placement = Placement(
            server_url=url,
            relay_prefix=tuple(in_site(bed, bed.site("relay0"))),
            loadgen_prefix=tuple(in_site(bed, bed.site("watch0"))),
        )
        others = list(group.children)
        steps = run_steps(group, placement, capacity, others, progress)
    return {"delay_mode": up.mode, "steps": steps}
