"""SwarmNode: the asyncio driver that runs one swarm peer (broadcaster, relay or viewer).

Why one class for every role: the wiring is the same - signaling events in, data-channel messages
in, timers in; core events, control and data messages out - only the media end differs (the
broadcaster publishes chunks, a viewer hands played chunks to a recorder). The swarm logic itself
lives in the sans-I/O `SwarmPeer`; this module only moves bytes and time between it and the world:

- every input (message, open, close, timer, published chunk) is fed to the core, then the core's
  events are handled, the control messages of every ready link are sent, and data messages are
  pumped while the link has room (`PeerManager.has_room`), the uplink gate lets data in (all
  links together hold at most ~0.1 s of the uplink's drain rate queued: `UplinkGate`, and at
  most ~0.4 s of its delivered rate unacknowledged: `flight_window_bytes`) and the upload cap
  allows; a link without room is told to the core (`set_link_full`), whose requests then
  hold no upload slot until it has room again;
- `WantNeighbours` -> `get_peers` -> `connect` (the manager staggers setups); with no signaling
  server connected, `exchange_candidates` -> `connect(peer, via=neighbour)` instead: the offer
  and answer travel as `signal` messages through the common neighbour (peer exchange, see
  streamer.swarm.exchange), and a `PeerSignal` event is fed to the manager as a server's
  signal would be; `DropNeighbour` ->
  bye, then disconnect; the server's `peer_left` closes that link at once;
- the media description comes from the welcome or a later `media` event; a new key, or a broadcast
  that restarted far ahead of where we play, rebuilds the core (stats carry over);
- a `status` goes to the server every `status_interval_s` so its tracker can pick good candidates.

Rules: the core's clock is Unix time (`time.time`, so lag compares across processes on a host);
nothing a peer or the server sends can raise out of a callback (bad media is logged and ignored,
bad peer messages drop that peer inside the core).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from signaling_wire import PEER_ID_RE
from streamer.errors import UserError
from streamer.node.hop_trace import HopTrace
from streamer.node.loop_lag import LoopLagMeter
from streamer.node.media_info import ChannelMedia, MediaInfoError, parse_media
from streamer.node.recent_failures import RecentFailures
from streamer.node.status import RateMeter
from streamer.node.token_bucket import TokenBucket
from streamer.node.uplink_gate import (
    GATE_POLL_S,
    UPLINK_SAMPLE_S,
    UplinkGate,
    flight_window_bytes,
)
from streamer.protocol import ChunkSigner, Role, travels_unordered
from streamer.swarm import (
    ChunkComplete,
    ChunkMissed,
    ChunkPlayed,
    DropNeighbour,
    Event,
    HeaderVerifier,
    PeerSignal,
    SwarmConfig,
    SwarmPeer,
    WantNeighbours,
    percentile,
)
from streamer.swarm.drain import send_control, send_data
from streamer.transport import (
    BroadcastEnded,
    MediaUpdate,
    PeerLeft,
    PeerManager,
    PeerRecord,
    PeersUpdate,
    Reconnected,
    RtcConfig,
    ServerError,
    SignalingClient,
    SignalingError,
    Welcome,
)
from streamer.transport.rtc import dispatch_signaling_event

logger = logging.getLogger(__name__)

#: The peer wire role (streamer.protocol) each signaling role (signaling_wire.ROLES) plays.
SWARM_ROLE_BY_SIGNALING_ROLE = {
    "broadcaster": Role.SOURCE,
    "relay": Role.RELAY,
    "viewer": Role.VIEWER,
}
_MAX_EARLY_MESSAGES = 64
"""Messages kept per link that opened before we knew the channel's key (then it is dropped)."""
_MIN_TIMER_DELAY_S = 0.002
_MAX_FLUSH_ROUNDS = 16
_BYE_GRACE_S = 0.3


@dataclass(frozen=True)
class NodeConfig:
    """Who the node is and how it behaves (units in names; None means the core's default)."""

    server_url: str
    channel: str
    role: str
    secret: str | None = None
    signing_key: Ed25519PrivateKey | None = None
    epoch: int = 0
    """The broadcaster's session, signed into its chunk headers (see ChunkHeader.epoch)."""
    target_neighbours: int | None = None
    max_neighbours: int | None = None
    upload_limit_bps: int | None = None
    """Cap on data-channel payload sent, bits per second (None: no cap)."""
    upload: bool = True
    """False: a viewer that serves nobody (its hello has no UPLOAD capability)."""
    neighbour_roles: frozenset[str] | None = None
    """Connect only to candidates of these roles ("broadcaster", "relay", "viewer"; None: any)."""
    upload_burst_bytes: int = 256 * 1024
    status_interval_s: float = 1.0
    rejoin_gap_chunks: int = 32
    """A restarted broadcast this many chunks ahead of our playout rebuilds the core."""
    chunk_seconds: float = 1.0
    """Broadcaster only: the chunk length (others learn it from the media description)."""
    seed: int | None = None
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    rtc: RtcConfig = field(default_factory=RtcConfig)
    connect_timeout_s: float = 10.0
    fallback_server_urls: tuple[str, ...] = ()
    """More servers of the cluster: the client tries them all (in its own shuffled order) and
    fails over to the next when it loses one."""
    hop_trace_path: str | None = None
    """Write every request and piece sent or received here (`streamer.node.hop_trace`)."""
    peer_exchange: bool = True
    """Tell neighbours about our neighbours, relay their WebRTC signals, and find neighbours
    through them while no signaling server is connected (False: the server only)."""

    @property
    def server_urls(self) -> tuple[str, ...]:
        return (self.server_url, *self.fallback_server_urls)

    def __post_init__(self) -> None:
        if self.role not in SWARM_ROLE_BY_SIGNALING_ROLE:
            raise ValueError(f"role must be one of {sorted(SWARM_ROLE_BY_SIGNALING_ROLE)}")
        if self.role == "broadcaster" and (self.signing_key is None or not self.secret):
            raise ValueError("a broadcaster needs its signing key and channel secret")


def merge_stats(cores: list[SwarmPeer]) -> dict[str, Any]:
    """One stats dict over successive cores of one node (a rebuilt core starts from zero)."""
    current = cores[-1].stats()
    totals = {
        key: sum(int(c.stats()[key]) for c in cores)
        for key in (
            "bytes_from_source",
            "bytes_from_peers",
            "bytes_uploaded",
            "bytes_duplicate",
            "stream_bytes",
            "chunks_played",
            "chunks_late",
            "chunks_missed",
        )
    }
    stall_s = sum(float(c.stats()["stall_s"]) for c in cores)
    lags_s = [lag for c in cores if c.playback is not None for lag in c.playback.lags_s]
    startup_s = next(
        (c.playback.startup_s for c in cores if c.playback and c.playback.startup_s is not None),
        None,
    )
    seen = totals["chunks_played"] + totals["chunks_late"] + totals["chunks_missed"]
    drops: dict[str, int] = {}
    for c in cores:
        for kind, count in c.drops.items():
            drops[kind] = drops.get(kind, 0) + count
    merged = dict(current)
    merged.update(totals)
    merged.update(
        {
            "startup_s": startup_s,
            "continuity": totals["chunks_played"] / seen if seen else None,
            "lag_s_p50": percentile(lags_s, 0.5),
            "lag_s_p95": percentile(lags_s, 0.95),
            "stall_s": stall_s,
            "drops": drops,
            "core_restarts": len(cores) - 1,
        }
    )
    return merged


class SwarmNode:
    """One peer of a channel, live on the network. See the module docstring."""

    def __init__(self, config: NodeConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.role = SWARM_ROLE_BY_SIGNALING_ROLE[config.role]
        self._clock = clock
        self._rng = random.Random(config.seed if config.seed is not None else os.urandom(8))
        try:
            self.client = SignalingClient(
                config.server_urls,
                channel=config.channel,
                role=config.role,
                secret=config.secret,
                connect_timeout_s=config.connect_timeout_s,
            )
        except ValueError as error:
            raise UserError(str(error)) from None
        self.manager: PeerManager | None = None
        self.core: SwarmPeer | None = None
        self._retired: list[SwarmPeer] = []
        self.media: ChannelMedia | None = None
        self._verifier: HeaderVerifier | None = None
        """The core's header verifier (viewers and relays), bound to the broadcast's epoch."""
        self.welcome: Welcome | None = None
        #: Called with every chunk the playout clock played (viewer recordings).
        self.on_chunk_played: Callable[[ChunkPlayed], None] | None = None
        #: Called when the channel's media description is first known or changes.
        self.on_media: Callable[[ChannelMedia], None] | None = None
        #: Called every status interval with the figures of the status line.
        self.on_status: Callable[[dict[str, Any]], None] | None = None
        #: Set when the node cannot go on (the server refused us); `failure` says why.
        self.done = asyncio.Event()
        self.failure: UserError | None = None
        self.broadcast_ended: str | None = None
        self.latest_seq: int | None = None
        self.chunks_released = 0
        self.chunks_completed = 0
        self._served: set[str] = set()
        self._early: dict[str, list[bytes]] = {}
        self._failed = RecentFailures()
        self._timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._throttled: set[str] = set()
        """Links with data held back by the upload cap or the uplink gate."""
        self._bucket: TokenBucket | None = None
        self._gate = UplinkGate()
        self._in_flush = False
        self._flush_again = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_meter = RateMeter()
        self._out_meter = RateMeter()
        self._loop_lag = LoopLagMeter()
        self._link_totals_base: tuple[int, int, int] | None = None
        """(bytes buffered on all links, bytes unacknowledged on all links, bytes ever sent) when
        first summed in this callback."""
        self._hop_trace = HopTrace(config.hop_trace_path) if config.hop_trace_path else None
        self._started_s = clock()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Welcome:
        """Join the channel; UserError when the server is unreachable or refuses us."""
        try:
            welcome = await self.client.connect()
        except SignalingError as error:
            raise UserError(describe_signaling_error(error, self.config)) from None
        self.welcome = welcome
        rtc = self.config.rtc
        if self.config.max_neighbours is not None:
            rtc = replace(rtc, max_peers=max(rtc.max_peers, self.config.max_neighbours + 8))
        self.manager = PeerManager(
            self.client,
            self,
            ice_servers=welcome.ice_servers,
            config=rtc,
            relay=self._relay_signal if self.config.peer_exchange else None,
        )
        if self.config.upload_limit_bps is not None:
            self._bucket = TokenBucket(
                self.config.upload_limit_bps / 8, self.config.upload_burst_bytes, self._clock()
            )
        if self.role == Role.SOURCE:
            self._new_core(None)
        elif welcome.media is not None:
            self._apply_media(welcome.media)
            self._on_peers(welcome.peers)
        self._spawn(self._signaling_loop(), "node-signaling")
        self._spawn(self._status_loop(), "node-status")
        self._spawn(self._uplink_loop(), "node-uplink")
        self._spawn(self._loop_lag.run(), "node-loop-lag")
        return welcome

    async def close(self) -> None:
        """Leave: bye to every neighbour, close the links and the signaling session."""
        if self._closed:
            return
        self._closed = True
        for handle in (self._timer, self._send_timer):
            if handle is not None:
                handle.cancel()
        if self.manager is not None:
            if self.core is not None:
                bye = self.core.leave()
                for pid in self.manager.open_peers():
                    self.manager.send(pid, bye)
                await asyncio.sleep(_BYE_GRACE_S)
            await self.manager.close()
        if self._hop_trace is not None:
            self._hop_trace.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.client.close()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fail(self, error: UserError) -> None:
        if self.failure is None:
            self.failure = error
        self.done.set()

    # ------------------------------------------------------------------ broadcaster

    async def publish_media(self, media: dict[str, Any]) -> None:
        """Broadcaster: describe the stream to the server (re-sent after a reconnect)."""
        self.media = parse_media(media)
        await self.client.publish(media)

    async def end_broadcast(self) -> None:
        await self.client.end()

    def publish_chunk(self, seq: int, data: bytes, start_s: float, duration_s: float) -> None:
        """Broadcaster: sign and offer a freshly released chunk to the swarm."""
        assert self.core is not None and self.role == Role.SOURCE
        key = self.config.signing_key
        assert key is not None
        now = self._clock()
        signer = ChunkSigner(key, self.core.config.piece_size_bytes, self.config.epoch)
        self.core.publish_chunk(signer.sign(seq, data, start_s, duration_s, now), data, now)
        self.latest_seq = seq
        self.chunks_released += 1
        self._after_input()

    # ------------------------------------------------------------------ cores and media

    def _swarm_config(self, chunk_seconds: float) -> SwarmConfig:
        cfg = replace(self.config.swarm, chunk_duration_s=chunk_seconds)
        if self.config.max_neighbours is not None:
            cfg = replace(cfg, max_neighbours=self.config.max_neighbours)
        if self.config.target_neighbours is not None:
            cfg = replace(cfg, target_neighbours=self.config.target_neighbours)
        if cfg.target_neighbours > cfg.max_neighbours:
            cfg = replace(cfg, target_neighbours=cfg.max_neighbours)
        if not self.config.peer_exchange:
            cfg = replace(cfg, exchange_interval_s=0.0)
        return cfg

    def _verifier_for(self, media: ChannelMedia) -> HeaderVerifier:
        self._verifier = HeaderVerifier(media.public_key_raw, media.epoch)
        return self._verifier

    def _new_core(self, media: ChannelMedia | None) -> None:
        now = self._clock()
        if self.core is not None:
            self._retired.append(self.core)
            bye = self.core.leave()
            assert self.manager is not None
            for pid in list(self.core.neighbour_ids):
                self.manager.send(pid, bye)
                self._disconnect_later(pid, "rebuilt")
        if media is None:
            self.core = SwarmPeer(
                role=self.role,
                now=now,
                config=self._swarm_config(self.config.chunk_seconds),
                rng=self._rng,
                peer_id=self.client.peer_id or "",
            )
        else:
            self.core = SwarmPeer(
                role=self.role,
                now=now,
                config=self._swarm_config(media.chunk_seconds),
                verifier=self._verifier_for(media),
                rng=self._rng,
                upload=self.config.upload,
                peer_id=self.client.peer_id or "",
            )
        assert self.manager is not None
        if self._hop_trace is not None:
            self._hop_trace.me(now, self.client.peer_id or "")
        for pid, early in list(self._early.items()):
            del self._early[pid]
            if not self.core.add_neighbour(pid, now):
                self.manager.disconnect(pid, "full")
                continue
            for data in early:
                self._trace(pid, data, outgoing=False)
                self.core.receive(pid, data, now)
        self._after_input()

    def _apply_media(self, raw: Any) -> None:
        if self.role == Role.SOURCE:
            return
        try:
            media = parse_media(raw)
        except MediaInfoError as error:
            logger.warning("ignoring a malformed media description: %s", error)
            return
        old, core = self.media, self.core
        self.media = media
        rebuild = core is None or old is None
        if old is not None and core is not None:
            pb = core.playback
            jumped = (
                media.first_seq is not None
                and pb is not None
                and pb.next_seq is not None
                and media.first_seq - pb.next_seq > self.config.rejoin_gap_chunks
            )
            rebuild = (
                old.public_key_raw != media.public_key_raw
                or old.chunk_seconds != media.chunk_seconds
                or jumped
            )
        if rebuild:
            self._new_core(media)
        elif self._verifier is not None and old is not None and old.epoch != media.epoch:
            # A restart of the same broadcaster: its links and chunks stay, its old session's
            # chunks are refused from now on, and the seqs it skipped count nowhere.
            self._verifier.epoch = media.epoch
            if core is not None and media.first_seq is not None:
                core.source_restarted(media.first_seq)
        self.broadcast_ended = None
        if self.on_media is not None:
            self.on_media(media)
        if not self._has_source_neighbour():
            self._ask_for_peers(self._swarm_config(media.chunk_seconds).target_neighbours)

    def _has_source_neighbour(self) -> bool:
        core = self.core
        if core is None:
            return False
        for pid in core.neighbour_ids:
            nb = core.neighbour(pid)
            if nb is not None and nb.is_source:
                return True
        return False

    # ------------------------------------------------------------------ signaling

    async def _signaling_loop(self) -> None:
        assert self.manager is not None
        try:
            async for event in self.client.events():
                if dispatch_signaling_event(self.manager, event):
                    continue
                self._on_signaling_event(event)
        except SignalingError as error:
            self._fail(UserError(describe_signaling_error(error, self.config)))
        except Exception as error:  # a bug must end the node visibly, not hang it
            logger.exception("signaling loop failed")
            self._fail(UserError(f"internal error in the signaling loop: {error}"))

    def _on_signaling_event(self, event: Any) -> None:
        if isinstance(event, PeersUpdate):
            self._on_peers(event.peers)
        elif isinstance(event, MediaUpdate):
            self._apply_media(event.media)
        elif isinstance(event, PeerLeft):
            assert self.manager is not None
            self.manager.disconnect(event.peer_id, "peer_left")
        elif isinstance(event, BroadcastEnded):
            self.broadcast_ended = event.reason
        elif isinstance(event, Reconnected):
            self.welcome = event.welcome
            if event.welcome.media is not None:
                self._apply_media(event.welcome.media)
            self._on_peers(event.welcome.peers)
        elif isinstance(event, ServerError):
            logger.info("server: %s %s", event.code, event.message)

    def _known_peers(self) -> set[str]:
        assert self.manager is not None
        return set(self.manager.open_peers()) | set(self.manager.pending_peers())

    def _ask_for_peers(self, count: int) -> None:
        failed = self._failed.ids(self._clock())
        exclude = [p for p in self._known_peers() | failed if PEER_ID_RE.match(p)]
        self._spawn(self.client.get_peers(max(1, min(count, 32)), exclude[:256]), "get-peers")

    def _wants_neighbours(self, count: int) -> None:
        """From the server while one is connected; else from our neighbours' hints."""
        if self.client.connected or not self.config.peer_exchange:
            self._ask_for_peers(count)
        else:
            self._connect_via_exchange(count)

    def _connect_via_exchange(self, count: int) -> None:
        """Offer links to peers our neighbours named, the signals relayed by those neighbours."""
        core, manager = self.core, self.manager
        if core is None or manager is None or self.role == Role.SOURCE:
            return
        now = self._clock()
        known = self._known_peers()
        failed = self._failed.ids(now)
        room = min(count, core.config.target_neighbours - len(known))
        for peer_id, via in core.exchange_candidates(room + len(known) + len(failed), now=now):
            if room <= 0:
                break
            if peer_id in known or peer_id in failed or peer_id == self.client.peer_id:
                continue
            if manager.connect(peer_id, via=via):
                logger.info("offering a link to %s through %s (peer exchange)", peer_id, via)
                known.add(peer_id)
                room -= 1

    def _relay_signal(self, via: str, to: str, data: Any) -> bool:
        """The manager's relay: a WebRTC signal for `to` goes on the link to neighbour `via`."""
        core = self.core
        if core is None:
            return False
        try:
            payload = json.dumps(dict(data), separators=(",", ":"))
        except (TypeError, ValueError):
            return False
        sent = core.send_signal(via, to, payload)
        self._after_input()
        return sent

    def _on_peer_signal(self, event: PeerSignal) -> None:
        """A neighbour relayed a signal to us: the manager takes it as one from the server, its
        answer going back through the same neighbour."""
        if self.manager is None or not self.config.peer_exchange:
            return
        try:
            data = json.loads(event.payload)
        except ValueError:
            self.manager.bad_signals += 1
            return
        if isinstance(data, dict):
            self.manager.handle_signal(event.from_peer, data, via=event.via)
        else:
            self.manager.bad_signals += 1

    def _on_peers(self, peers: tuple[PeerRecord, ...]) -> None:
        """Connect to candidates while below target; always to the broadcaster if we lack it."""
        core, manager = self.core, self.manager
        if core is None or manager is None or self.role == Role.SOURCE:
            return
        roles = self.config.neighbour_roles
        if roles is not None:
            peers = tuple(p for p in peers if p.role in roles)
        known = self._known_peers()
        failed = self._failed.ids(self._clock())
        room = core.config.target_neighbours - len(known)
        need_source = not self._has_source_neighbour()
        for record in peers:
            pid = record.peer_id
            if pid in known or pid in failed or pid == self.client.peer_id:
                continue
            wanted_source = record.role == "broadcaster" and need_source
            if room <= 0 and not (wanted_source and len(known) < core.config.max_neighbours):
                continue
            if manager.connect(pid):
                known.add(pid)
                room -= 1

    # ------------------------------------------------------------------ PeerListener

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        core, manager = self.core, self.manager
        assert manager is not None
        if core is None:
            self._early[peer_id] = []
            return
        if not core.add_neighbour(peer_id, self._clock()):
            manager.disconnect(peer_id, "full")
            return
        self._after_input()

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        core = self.core
        if core is None:
            early = self._early.get(peer_id)
            if early is not None and len(early) < _MAX_EARLY_MESSAGES:
                early.append(data)
            elif self.manager is not None:
                self.manager.disconnect(peer_id, "too_early")
            return
        self._trace(peer_id, data, outgoing=False)
        core.receive(peer_id, data, self._clock())
        self._after_input()

    def on_peer_writable(self, peer_id: str) -> None:
        if self.core is not None:
            self._pump(peer_id)
            # A link that has room again takes back its upload slot from another.
            self._after_input()

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        self._early.pop(peer_id, None)
        self._throttled.discard(peer_id)
        if reason not in ("shutdown", "rebuilt"):
            self._failed.add(peer_id, self._clock())
        if self.core is not None:
            self.core.remove_neighbour(peer_id, self._clock())
            self._after_input()

    # ------------------------------------------------------------------ the core's output

    def _after_input(self) -> None:
        """Drain events, send what is ready, re-arm the timer (re-entrant safe)."""
        if self._in_flush:
            self._flush_again = True
            return
        self._link_totals_base = None
        core = self.core
        if core is None or self._closed:
            return
        self._in_flush = True
        try:
            # Sending can make more links ready (a finished upload hands its slot to another
            # link), so drain until the core is quiet; bounded so a bug cannot spin forever.
            for _round in range(_MAX_FLUSH_ROUNDS):
                self._flush_again = False
                events = core.pop_events()
                for event in events:
                    self._on_core_event(event)
                ready = core.take_ready()
                for pid in ready:
                    self._pump(pid)
                if not (self._flush_again or events or ready):
                    break
        finally:
            self._in_flush = False
            self._link_totals_base = None
        self._rearm_timer()

    def _on_core_event(self, event: Event) -> None:
        if isinstance(event, ChunkPlayed):
            if self.on_chunk_played is not None:
                self.on_chunk_played(event)
        elif isinstance(event, ChunkComplete):
            self.chunks_completed += 1
            if self.latest_seq is None or event.seq > self.latest_seq:
                self.latest_seq = event.seq
        elif isinstance(event, ChunkMissed):
            logger.debug("missed chunk %d", event.seq)
        elif isinstance(event, DropNeighbour):
            logger.info("dropping neighbour %s: %s", event.peer_id, event.reason)
            assert self.manager is not None
            self._failed.add(event.peer_id, self._clock())
            if event.bye is not None:
                self.manager.send(event.peer_id, event.bye)
            self._disconnect_later(event.peer_id, "dropped")
        elif isinstance(event, WantNeighbours):
            self._wants_neighbours(event.count)
        elif isinstance(event, PeerSignal):
            self._on_peer_signal(event)

    def _disconnect_later(self, peer_id: str, reason: str) -> None:
        """Close after a moment, so a bye just queued has a chance to leave."""
        manager = self.manager
        assert manager is not None
        asyncio.get_running_loop().call_later(_BYE_GRACE_S, manager.disconnect, peer_id, reason)

    def _pump(self, peer_id: str) -> None:
        core, manager = self.core, self.manager
        assert core is not None and manager is not None
        if not send_control(core, peer_id, self._send):
            return
        now = self._clock()
        bucket, gate = self._bucket, self._gate
        buffered, outstanding = self._link_totals()
        gate.observe(now, buffered, manager.total_bytes_sent)
        # Not the broadcaster's: its first copies are what every peer waits for, and its
        # uplink queue did not overflow on the test bed (its loss episodes were its paths'
        # random loss), so holding them back only delayed them.
        flight_window = (
            None
            if self.role == Role.SOURCE
            else flight_window_bytes(core.uplink_delivered_bytes_per_s)
        )

        def may_send() -> bool:
            if not manager.has_room(peer_id):
                return False
            if bucket is not None and not bucket.ready(now):
                self._send_later(peer_id, bucket.wait_s(now))
                return False
            # A link with nothing queued may always take one message: one association alone
            # cannot fill an uplink under loss (its window halves at every loss).
            gate_full = manager.buffered_amount(peer_id) > 0 and not gate.has_room(buffered)
            if gate_full or (flight_window is not None and outstanding >= flight_window):
                self._send_later(peer_id, GATE_POLL_S)
                return False
            return True

        def send(pid: str, data: bytes) -> bool:
            nonlocal buffered, outstanding
            if not self._send_data(pid, data):
                return False
            buffered, outstanding = self._link_totals()
            self._served.add(pid)
            if bucket is not None:
                bucket.consume(len(data), now)
            return True

        # A full link holds no upload slot: one held back by its congestion window (a lossy
        # path) must not keep the next requests off links that could carry them.
        core.set_link_full(peer_id, not manager.has_room(peer_id))
        send_data(core, peer_id, now, send, may_send)
        core.set_link_full(peer_id, not manager.has_room(peer_id))

    def _link_totals(self) -> tuple[int, int]:
        """Bytes queued on all links now, and bytes not yet acknowledged on all links. Summed
        over the links once per callback of ours (the transport drains them only in its own
        tasks, never while one of ours runs), plus what we handed to it since: a relay pumps its
        links for every message that comes in, and summing dozens of them each time was a
        tenth of its CPU on the test bed."""
        manager = self.manager
        assert manager is not None
        if self._link_totals_base is None:
            self._link_totals_base = (
                manager.buffered_total(),
                manager.bytes_in_flight(),
                manager.total_bytes_sent,
            )
        buffered, outstanding, sent = self._link_totals_base
        handed = manager.total_bytes_sent - sent
        return buffered + handed, outstanding + handed

    def _send(self, peer_id: str, data: bytes) -> bool:
        """Send one message on the channel its type travels on (pieces and requests unordered:
        one held by a retransmission holds back nothing sent after it; headers stay in order
        ahead of the haves and pieces that need them)."""
        assert self.manager is not None
        sent = self.manager.send(peer_id, data, ordered=not travels_unordered(data))
        if sent:
            self._trace(peer_id, data, outgoing=True)
        return sent

    def _trace(self, peer_id: str, data: bytes, outgoing: bool) -> None:
        if self._hop_trace is not None:
            self._hop_trace.message(time.time(), outgoing, peer_id, data)

    def _send_data(self, peer_id: str, data: bytes) -> bool:
        """Send one header or piece (a seam for tests that play a lying peer)."""
        return self._send(peer_id, data)

    def _send_later(self, peer_id: str, delay_s: float) -> None:
        self._throttled.add(peer_id)
        if self._send_timer is None:
            loop = asyncio.get_running_loop()
            self._send_timer = loop.call_later(delay_s, self._on_send_timer)

    def _on_send_timer(self) -> None:
        self._send_timer = None
        throttled, self._throttled = self._throttled, set()
        core = self.core
        if core is None or self._closed:
            return
        # The links whose requests hold the core's upload slots first: the most urgent.
        first = [pid for pid in core.upload_peers() if pid in throttled]
        for pid in first + sorted(throttled.difference(first)):
            self._pump(pid)
        self._after_input()  # (which ends this callback's sum of the links' buffers)

    def _rearm_timer(self) -> None:
        core = self.core
        if core is None or self._closed:
            return
        when_s = core.next_timer()
        if when_s is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + max(_MIN_TIMER_DELAY_S, when_s - self._clock())
        if self._timer is not None:
            if abs(self._timer.when() - at) < _MIN_TIMER_DELAY_S:
                return
            self._timer.cancel()
        self._timer = loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.core is None or self._closed:
            return
        self.core.handle_timer(self._clock())
        self._after_input()

    # ------------------------------------------------------------------ status and stats

    def figures(self) -> dict[str, Any]:
        """Live figures for the status line and the server's `status`."""
        core, manager = self.core, self.manager
        now = self._clock()
        figures: dict[str, Any] = {
            "neighbours": len(core.neighbour_ids) if core else 0,
            "in_bps": self._in_meter.rate_bps,
            "out_bps": self._out_meter.rate_bps,
            "latest_seq": self.latest_seq,
        }
        if manager is not None:
            figures["in_bps"] = self._in_meter.sample(manager.total_bytes_received, now)
            figures["out_bps"] = self._out_meter.sample(manager.total_bytes_sent, now)
            paths = self._neighbour_paths().values()
            figures["relayed_neighbours"] = sum(p["pair_type"] == "relay" for p in paths)
        pb = core.playback if core else None
        if pb is not None and pb.next_seq is not None and self.latest_seq is not None:
            figures["buffer_chunks"] = max(0, self.latest_seq - pb.next_seq + 1)
        if pb is not None:
            figures["continuity"] = pb.continuity
            figures["lag_s"] = pb.lags_s[-1] if pb.lags_s else None
        if core is None and self.role != Role.SOURCE:
            figures["note"] = "waiting for the broadcast"
        elif self.broadcast_ended:
            figures["note"] = f"broadcast {self.broadcast_ended}"
        elif pb is not None and pb.waiting_at_edge:
            figures["note"] = "broadcast paused (nothing new from the broadcaster)"
        return figures

    async def _uplink_loop(self) -> None:
        """Tell the core what the uplink delivered (it stops uploading on a narrow one)."""
        while True:
            await asyncio.sleep(UPLINK_SAMPLE_S)
            core, manager = self.core, self.manager
            if core is None or manager is None or self._closed:
                continue
            core.uplink_delivered(
                manager.bytes_delivered(), manager.bytes_outstanding(), self._clock()
            )
            self._after_input()

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.status_interval_s)
            figures = self.figures()
            if self.on_status is not None:
                self.on_status(figures)
            core = self.core
            if core is None or not self.client.connected:
                continue
            out_bps = int(figures["out_bps"])
            spare_bps = None
            if self.config.upload_limit_bps is not None:
                spare_bps = max(0, self.config.upload_limit_bps - out_bps)
            await self.client.status(
                neighbours=[p for p in core.neighbour_ids if PEER_ID_RE.match(p)][:64],
                upload_bps=out_bps,
                spare_upload_bps=spare_bps,
                latest_seq=self.latest_seq,
                stats={"continuity": figures.get("continuity") or 0.0},
            )

    def stats(self) -> dict[str, Any]:
        """Everything `--stats-json` writes (the core's figures over every core, plus ours)."""
        cores = [*self._retired, *([self.core] if self.core else [])]
        stats: dict[str, Any] = merge_stats(cores) if cores else {}
        manager = self.manager
        stats.update(
            {
                "role": self.config.role,
                "channel": self.config.channel,
                "peer_id": self.client.peer_id,
                "duration_s": self._clock() - self._started_s,
                "cpu_s": time.process_time(),
                "chunks_released": self.chunks_released,
                "chunks_completed": self.chunks_completed,
                "peers_served": len(self._served),
                "signaling_reconnects": self.client.reconnects,
                "transport_bytes_sent": manager.total_bytes_sent if manager else 0,
                "transport_bytes_received": manager.total_bytes_received if manager else 0,
                "transport_messages_sent": manager.total_messages_sent if manager else 0,
                "neighbour_paths": self._neighbour_paths(),
                "sctp_recovery": manager.sctp_recovery_total() if manager else None,
                "loop_lag": self._loop_lag.figures(),
                "uplink_drain_bps": (
                    int(self._gate.drain_bytes_per_s * 8) if self._gate.drain_bytes_per_s else None
                ),
                "uplink_window_bytes": self._gate.window_bytes,
                "ice_pair_types": dict(manager.pair_types_opened) if manager else {},
                "neighbour_count": len(self.core.neighbour_ids) if self.core else 0,
                "neighbours_via_exchange": (
                    len(set(manager.open_peers_via_exchange()) & set(self.core.neighbour_ids))
                    if manager and self.core
                    else 0
                ),
                "links_opened_via_exchange": manager.opened_via_exchange if manager else 0,
            }
        )
        for key in ("bytes_uploaded", "bytes_from_source", "bytes_from_peers", "stream_bytes"):
            stats.setdefault(key, 0)
        if self.role == Role.SOURCE:
            stream_bytes = stats.get("stream_bytes") or 0
            stats["upload_ratio"] = stats["bytes_uploaded"] / stream_bytes if stream_bytes else None
        return stats

    def _neighbour_paths(self) -> dict[str, dict[str, Any]]:
        """Per open neighbour: the selected ICE candidate pair type and its RTT, and how its
        SCTP association recovered from loss (what we sent it)."""
        manager = self.manager
        paths: dict[str, dict[str, Any]] = {}
        for peer_id in manager.open_peers() if manager else []:
            stats = manager.stats(peer_id) if manager else None
            if stats is not None and stats.ice is not None:
                paths[peer_id] = stats.ice.to_json()
                paths[peer_id]["setup_ms"] = dict(stats.setup_ms)
                recovery = manager.sctp_recovery(peer_id) if manager else None
                if recovery is not None:
                    paths[peer_id]["sctp"] = recovery
        return paths


def describe_signaling_error(error: SignalingError, config: NodeConfig) -> str:
    """One line a user can act on."""
    if error.code in ("unreachable", "timeout"):
        where = " or ".join(config.server_urls)
        return f"cannot reach the signaling server at {where} ({error.message})"
    if error.code == "channel_owned":
        return (
            f"channel {config.channel!r} belongs to another broadcaster "
            "(another key file); pick another --channel or use its --key"
        )
    return f"the signaling server refused us: {error.code}: {error.message}"
