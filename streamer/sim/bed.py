"""The namespace test bed in virtual time: `streamer simulate --profile netbed`.

The sites come from `streamer.netbed.topology` (the same Profile and build_bed `streamer netbed`
uses, so the same seed gives the same delays, losses, uplinks and NATs); each site's node runs a
swarm core in streamer.sim.links' QueuedNetwork. The timeline follows `streamer netbed`'s: the
broadcaster first, the relays `source_lead_s` later, then one viewer every `stagger_s` in the
bed's order (watchers, then pages), each starting its core after its process has started (a
headless browser takes longer) and leaving `duration_s` later. The transport buffer's marks are
the real driver's (`streamer.transport.rtc.RtcConfig`, read when this module is imported).

Rules: everything a run does follows from its BedScenario (seed included); the figures come from
the cores' own stats, summarised as `streamer netbed` summarises its processes' stats files.
"""

from __future__ import annotations

import gc
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.bench.figures import summarise_viewers
from streamer.netbed.topology import Bed, Profile, Site, build_bed, describe_sites
from streamer.protocol import ChunkSigner, Role
from streamer.sim.links import Access, QueuedNetwork, Transport
from streamer.sim.network import Observer, SimNode, Tap
from streamer.sim.scenario import SOURCE_ID, _join, test_key
from streamer.swarm import HeaderVerifier, SwarmConfig, SwarmPeer
from streamer.swarm.chunks import PiecePool
from streamer.transport.rtc import RtcConfig

_RTC = RtcConfig()
BUFFER_HIGH_BYTES = _RTC.buffer_high_bytes
BUFFER_LOW_BYTES = _RTC.buffer_low_bytes
BED_STREAM_RATE_BPS = 745_000.0
"""The bench's packaged 1 Mbit/s clip as the bed measures it (chunk bytes per second)."""
SIM_PREFIX = "simbed"


def bed_transport() -> Transport:
    """The transport model with the real driver's bufferedAmount marks."""
    return Transport(buffer_high_bytes=BUFFER_HIGH_BYTES, buffer_low_bytes=BUFFER_LOW_BYTES)


@dataclass(frozen=True)
class BedScenario:
    profile: Profile = field(default_factory=Profile)
    duration_s: float = 40.0
    """How long each viewer watches (`streamer netbed --duration`)."""
    stagger_s: float = 1.0
    stream_rate_bps: float = BED_STREAM_RATE_BPS
    chunk_duration_s: float = 1.0
    transport: Transport = field(default_factory=bed_transport)
    source_lead_s: float = 1.0
    """The broadcaster runs this long before the relays start (its join, the server's reply)."""
    watcher_start_s: float = 1.0
    """From a `streamer watch` process's start to its core (imports, the server's welcome)."""
    page_start_s: float = 2.5
    """The same for a headless Chromium page (browser start, page load)."""
    seed: int = 1
    config: SwarmConfig = field(default_factory=SwarmConfig)


@dataclass
class BedResult:
    scenario: BedScenario
    bed: Bed
    per_viewer: dict[str, dict[str, Any]]
    source_stats: dict[str, Any]
    relays: dict[str, dict[str, Any]]
    wall_s: float
    events: int
    retransmissions: int

    def figures(self) -> dict[str, Any]:
        """The headline figures, with the keys `streamer netbed --json` uses under swarm.figures."""
        figures = summarise_viewers(list(self.per_viewer.values()))
        stream_bytes = self.source_stats["stream_bytes"]
        uploaded = self.source_stats["bytes_uploaded"]
        figures.update(
            {
                "source_upload_ratio": uploaded / stream_bytes if stream_bytes else None,
                "source_bytes_uploaded": uploaded,
                "stream_bytes": stream_bytes,
                "stream_rate_bps": self.scenario.stream_rate_bps,
                "viewers_without_stats": 0,
            }
        )
        return figures

    def to_json(self) -> dict[str, Any]:
        """The shape of `streamer netbed --json` (sites, swarm: figures, per_viewer, relays)."""
        return {
            "stream_rate_bps": self.scenario.stream_rate_bps,
            "sites": describe_sites(self.bed.sites),
            "delay_mode": "simulated",
            "swarm": {
                "figures": self.figures(),
                "per_viewer": self.per_viewer,
                "relays": self.relays,
            },
            "baseline": None,
            "wall_s": self.wall_s,
            "events": self.events,
            "retransmissions": self.retransmissions,
        }


def access_of(site: Site) -> Access:
    return Access(
        delay_s=site.link.delay_s,
        loss=site.link.loss,
        jitter_s=site.link.jitter_s,
        queue_s=site.uplink_queue_s,
        nat=site.nat,
    )


def viewer_sites(bed: Bed) -> list[Site]:
    """In the order `streamer netbed` starts them."""
    return [s for s in bed.sites if s.role in ("watcher", "page")]


def join_times_s(sc: BedScenario, bed: Bed) -> dict[str, float]:
    """When each relay's and viewer's core starts, in virtual seconds from the broadcaster's."""
    times = {s.name: sc.source_lead_s for s in bed.by_role("relay")}
    for k, site in enumerate(viewer_sites(bed)):
        start_s = sc.page_start_s if site.role == "page" else sc.watcher_start_s
        times[site.name] = sc.source_lead_s + (k + 1) * sc.stagger_s + start_s
    return times


def run_bed_scenario(
    sc: BedScenario, observer: Observer | None = None, tap: Tap | None = None
) -> BedResult:
    """Run the bed's sites in virtual time; observer sees every core's events, tap every
    message put on a wire (as in streamer.sim.run_scenario)."""
    started = time.perf_counter()
    bed = build_bed(sc.profile, sc.stream_rate_bps, SIM_PREFIX)
    rng = random.Random(sc.seed)
    src = bed.by_role("broadcaster")[0]
    access = {s.name: access_of(s) for s in bed.sites}
    access[SOURCE_ID] = access_of(src)
    infra = bed.by_role("infra")
    net = QueuedNetwork(
        rng=rng,
        access=access,
        transport=sc.transport,
        turn_delay_s=infra[0].link.delay_s if infra else None,
        observer=observer,
        tap=tap,
    )
    config = replace(sc.config, chunk_duration_s=sc.chunk_duration_s)
    key = test_key()
    verifier = HeaderVerifier(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    stream_bytes_per_s = sc.stream_rate_bps / 8
    source = SwarmPeer(role=Role.SOURCE, now=0.0, config=config, rng=random.Random(rng.random()))
    signer = ChunkSigner(key, config.piece_size_bytes)
    assert src.uplink_bps is not None
    net.add_node(SimNode(SOURCE_ID, source, src.uplink_bps / 8))

    joins = join_times_s(sc, bed)
    leaves = {s.name: joins[s.name] + sc.duration_s for s in viewer_sites(bed)}
    end_s = max(leaves.values(), default=sc.duration_s) + 0.01
    chunk_bytes = int(stream_bytes_per_s * sc.chunk_duration_s)
    media_rng = random.Random(sc.seed + 1)
    pool = PiecePool()

    def publish(seq: int) -> None:
        size = int(chunk_bytes * media_rng.uniform(0.8, 1.2))
        data = media_rng.randbytes(size)
        start_s = seq * sc.chunk_duration_s
        header = signer.sign(seq, data, start_s, sc.chunk_duration_s, net.now)
        source.publish_chunk(header, data, net.now)
        net.pump(net.nodes[SOURCE_ID])
        pool.evict_below(seq - config.source_keep_chunks - config.max_ahead_chunks)
        if net.now + sc.chunk_duration_s <= end_s:
            net.queue.at(net.now + sc.chunk_duration_s, publish, seq + 1)

    net.queue.at(sc.chunk_duration_s, publish, 0)
    for site in [*bed.by_role("relay"), *viewer_sites(bed)]:
        assert site.uplink_bps is not None
        role = Role.RELAY if site.role == "relay" else Role.VIEWER
        net.queue.at(
            joins[site.name],
            _join,
            net,
            site.name,
            role,
            site.uplink_bps / 8,
            True,
            None,
            config,
            verifier,
            random.Random(rng.random()),
            pool,
        )
    for name, when in leaves.items():
        net.queue.at(when, net.leave, name, False)

    collecting = gc.isenabled()
    gc.disable()
    try:
        net.queue.run_until(end_s)
    finally:
        if collecting:
            gc.enable()
    per_viewer = {}
    for site in viewer_sites(bed):
        node = net.nodes.get(site.name)
        stats = node.core.stats() if node else {"continuity": 0.0, "missing": True}
        stats["duration_s"] = sc.duration_s
        per_viewer[site.name] = stats
    relays = {}
    for site in bed.by_role("relay"):
        stats = net.nodes[site.name].core.stats()
        relays[site.name] = {
            "bytes_uploaded": stats["bytes_uploaded"],
            "duration_s": end_s - joins[site.name],
        }
    return BedResult(
        scenario=sc,
        bed=bed,
        per_viewer=per_viewer,
        source_stats=source.stats(),
        relays=relays,
        wall_s=time.perf_counter() - started,
        events=net.queue.processed,
        retransmissions=net.retransmissions,
    )
