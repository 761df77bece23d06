"""Swarm scenarios for the tests and `streamer simulate`: describe, build, run, summarise.

Rules: a scenario is fully described by its Scenario value (seed included), so a run is
reproducible; results are computed from the cores' own stats, never assumed.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import ChunkSigner, Role
from streamer.sim.network import Observer, SimNetwork, SimNode, Tap
from streamer.swarm import HeaderVerifier, SwarmConfig, SwarmPeer, percentile
from streamer.swarm.chunks import PiecePool
from streamer.swarm.config import relay_config

SOURCE_ID = "source"

CoreFactory = Callable[..., SwarmPeer]
"""Builds one peer's core: (peer id, **SwarmPeer's keyword arguments) -> the core. The default
is SwarmPeer itself; tests/conformance records every input and output of chosen cores with one."""


def _plain_core(peer_id: str, **kwargs: Any) -> SwarmPeer:
    return SwarmPeer(peer_id=peer_id, **kwargs)


@dataclass(frozen=True, slots=True)
class Scenario:
    """One simulated run, whole: the audience, the links, the misbehaviour and the seed.

    The defaults are a clean swarm (no loss, no churn, everyone uploads 1.5-2x); `streamer
    simulate` starts from its own mix (streamer.bench.simulate.SIMULATE_DEFAULTS). Rates are
    multiples of the stream rate.
    """

    peers: int = 20
    relays: int = 0
    duration_s: float = 30.0
    stream_rate_bps: float = 1_000_000
    chunk_duration_s: float = 1.0
    source_upload_ratio: float = 2.0
    """Source uplink as a multiple of the stream rate."""
    peer_upload_ratio: tuple[float, float] = (1.5, 2.0)
    """Each peer's uplink, uniform in this range, as a multiple of the stream rate."""
    relay_upload_ratio: float = 10.0
    download_only_share: float = 0.0
    """Share of viewers that upload nothing (behind strict NATs)."""
    join_window_s: float | None = None
    """Relays, then viewers, join one by one, evenly spread over this window after the warm-up
    (None: a third of the duration)."""
    latency_s: float = 0.03
    loss_rate: float = 0.0
    liars: int = 0
    liar_mode: str = "piece"
    leave_share: float = 0.0
    """Share of viewers that leave (half with a bye, half silently) in the middle third."""
    warmup_s: float = 0.0
    """Source publishes this long before the first viewer joins."""
    seed: int = 1
    tracker_down_s: tuple[float, float] | None = None
    """[start, end) in which no signaling server answers: links come through peer exchange."""
    config: SwarmConfig = field(default_factory=SwarmConfig)

    def __post_init__(self) -> None:
        low, high = self.peer_upload_ratio
        if not 0 <= low <= high:
            raise ValueError("upload ratio range must be 0 <= low <= high")
        if self.duration_s <= 0 or self.chunk_duration_s <= 0 or self.stream_rate_bps <= 0:
            raise ValueError("duration, chunk length and stream rate must be positive")
        for name in ("loss_rate", "leave_share", "download_only_share"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be within [0, 1)")
        if self.latency_s < 0 or self.source_upload_ratio <= 0 or self.relays < 0:
            raise ValueError("latency >= 0, source upload > 0 and relays >= 0 are required")
        if self.join_window_s is not None and self.join_window_s < 0:
            raise ValueError("the join window must be >= 0")

    @property
    def join_stagger_s(self) -> float:
        """Time between two joins."""
        window_s = self.duration_s / 3 if self.join_window_s is None else self.join_window_s
        return window_s / max(1, self.peers + self.relays)


@dataclass(slots=True)
class SimResult:
    scenario: Scenario
    peer_stats: dict[str, dict[str, Any]]
    source_stats: dict[str, Any]
    liars: list[str]
    left: list[str]
    drops: list[tuple[float, str, str, str]]
    wall_s: float
    events: int
    upload_ratios: dict[str, float] = field(default_factory=dict)
    """Each relay's and viewer's uplink as drawn, x stream rate (0 for download-only)."""

    @property
    def viewers(self) -> dict[str, dict[str, Any]]:
        """Honest viewers that stayed to the end and started playing."""
        return {
            pid: s
            for pid, s in self.peer_stats.items()
            if s["role"] == "viewer" and pid not in self.liars and pid not in self.left
        }

    @property
    def source_upload_ratio(self) -> float:
        stream = self.source_stats["stream_bytes"]
        return self.source_stats["bytes_uploaded"] / stream if stream else 0.0

    def summary(self) -> dict[str, Any]:
        viewers = list(self.viewers.values())
        continuity = [s["continuity"] for s in viewers if s["continuity"] is not None]
        startup = [s["startup_s"] for s in viewers if s["startup_s"] is not None]
        lags_p50 = [s["lag_s_p50"] for s in viewers if s["lag_s_p50"] is not None]
        lags_p95 = [s["lag_s_p95"] for s in viewers if s["lag_s_p95"] is not None]
        from_peers = sum(s["bytes_from_peers"] for s in viewers)
        from_source = sum(s["bytes_from_source"] for s in viewers)
        return {
            "peers": self.scenario.peers,
            "viewers_counted": len(viewers),
            "viewers_started": len(startup),
            "continuity_min": min(continuity) if continuity else None,
            "continuity_mean": sum(continuity) / len(continuity) if continuity else None,
            "startup_s_p50": percentile(startup, 0.5),
            "lag_s_p50": percentile(lags_p50, 0.5),
            "lag_s_p95": percentile(lags_p95, 0.95),
            "stall_s_mean": sum(s.get("stall_s", 0.0) for s in viewers) / max(1, len(viewers)),
            "source_upload_ratio": self.source_upload_ratio,
            "peer_share": from_peers / (from_peers + from_source) if from_peers else 0.0,
            "duplicate_share": sum(s["bytes_duplicate"] for s in viewers)
            / max(1, from_peers + from_source),
            "neighbours_min": min((s["neighbours"] for s in viewers), default=None),
            "links_opened_via_exchange": sum(s["links_opened_via_exchange"] for s in viewers),
            "wall_s": self.wall_s,
            "events": self.events,
        }


def test_key() -> Ed25519PrivateKey:
    """A fixed key for reproducible simulations (never for a real broadcast)."""
    return Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def run_scenario(
    sc: Scenario,
    on_progress: Callable[[float], None] | None = None,
    observer: Observer | None = None,
    tap: Tap | None = None,
    make_core: CoreFactory = _plain_core,
) -> SimResult:
    """Build the swarm of sc, run it for sc.duration_s of virtual time, and collect stats.
    on_progress, if given, is called now and then with the virtual time reached; observer sees
    every event of every core (chunks completed and played, drops) and tap every message sent
    (for traces: benchmarks/sim_spread.py); make_core builds each core (see CoreFactory)."""
    started = time.perf_counter()
    rng = random.Random(sc.seed)
    net = SimNetwork(
        rng=rng,
        latency_s=sc.latency_s,
        loss_rate=sc.loss_rate,
        tracker_down=sc.tracker_down_s,
        observer=observer,
        tap=tap,
    )
    config = replace(sc.config, chunk_duration_s=sc.chunk_duration_s)
    key = test_key()
    verifier = HeaderVerifier(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    stream_bytes_per_s = sc.stream_rate_bps / 8
    source = make_core(
        SOURCE_ID,
        role=Role.SOURCE,
        now=0.0,
        config=config,
        rng=random.Random(rng.random()),
    )
    signer = ChunkSigner(key, config.piece_size_bytes)
    net.add_node(SimNode(SOURCE_ID, source, sc.source_upload_ratio * stream_bytes_per_s))

    chunk_bytes = int(stream_bytes_per_s * sc.chunk_duration_s)
    media_rng = random.Random(sc.seed + 1)
    pool = PiecePool()
    """One copy of each verified piece for all simulated peers (memory only)."""

    def publish(seq: int) -> None:
        size = int(chunk_bytes * media_rng.uniform(0.8, 1.2))
        data = media_rng.randbytes(size)
        start_s = seq * sc.chunk_duration_s
        header = signer.sign(seq, data, start_s, sc.chunk_duration_s, net.now)
        source.publish_chunk(header, data, net.now)
        net.pump(net.nodes[SOURCE_ID])
        pool.evict_below(seq - config.source_keep_chunks - config.max_ahead_chunks)
        if net.now + sc.chunk_duration_s <= sc.duration_s:
            net.queue.at(net.now + sc.chunk_duration_s, publish, seq + 1)

    net.queue.at(sc.chunk_duration_s, publish, 0)

    liars: list[str] = []
    left: list[str] = []
    upload_ratios: dict[str, float] = {}
    ids = [f"relay{i}" for i in range(sc.relays)] + [f"peer{i}" for i in range(sc.peers)]
    join_stagger_s = sc.join_stagger_s
    for n, pid in enumerate(ids):
        is_relay = pid.startswith("relay")
        join_s = sc.warmup_s + n * join_stagger_s
        ratio = sc.relay_upload_ratio if is_relay else rng.uniform(*sc.peer_upload_ratio)
        uploads = is_relay or rng.random() >= sc.download_only_share
        upload_ratios[pid] = ratio if uploads else 0.0
        liar = None
        if not is_relay and len(liars) < sc.liars and n % 3 == 1:
            liar = sc.liar_mode
            liars.append(pid)
        net.queue.at(
            join_s,
            _join,
            net,
            pid,
            Role.RELAY if is_relay else Role.VIEWER,
            ratio * stream_bytes_per_s,
            uploads,
            liar,
            config,
            verifier,
            random.Random(rng.random()),
            pool,
            make_core,
        )
    viewers = [pid for pid in ids if pid.startswith("peer") and pid not in liars]
    leavers = rng.sample(viewers, int(len(viewers) * sc.leave_share))
    for i, pid in enumerate(leavers):
        when = sc.duration_s / 3 + rng.random() * sc.duration_s / 3
        net.queue.at(when, net.leave, pid, i % 2 == 1)
        left.append(pid)

    # The cores make no reference cycles worth collecting, while the cyclic collector's full
    # passes over millions of live objects took 13% of a 10,000-peer run: off while it runs.
    collecting = gc.isenabled()
    gc.disable()
    try:
        net.queue.run_until(sc.duration_s, on_progress)
    finally:
        if collecting:
            gc.enable()
    return SimResult(
        scenario=sc,
        peer_stats={
            pid: {
                **net.nodes[pid].core.stats(),
                "links_opened_via_exchange": net.links_via_exchange.get(pid, 0),
            }
            for pid in ids
            if pid in net.nodes
        },
        source_stats=source.stats(),
        liars=liars,
        left=left,
        drops=net.drops,
        wall_s=time.perf_counter() - started,
        events=net.queue.processed,
        upload_ratios=upload_ratios,
    )


def _join(
    net: SimNetwork,
    pid: str,
    role: Role,
    upload_bytes_per_s: float,
    uploads: bool,
    liar: str | None,
    config: SwarmConfig,
    verifier: HeaderVerifier,
    rng: random.Random,
    pool: PiecePool,
    make_core: CoreFactory = _plain_core,
) -> None:
    core = make_core(
        pid,
        role=role,
        now=net.now,
        config=relay_config(config) if role == Role.RELAY else config,
        verifier=verifier,
        rng=rng,
        upload=uploads,
        piece_pool=pool,
    )
    net.add_node(SimNode(pid, core, upload_bytes_per_s, liar=liar))
    # The tracker hands a newcomer the source plus a random sample, like the signaling server.
    net.connect(pid, SOURCE_ID)
