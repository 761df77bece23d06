"""One aiortc RTCPeerConnection with one binary data channel per neighbour.

Why this module exists: the swarm core only knows peer ids and bytes. Everything WebRTC-shaped
(offer/answer/ICE through the signaling server, glare, staggered setup, timeouts, flow control by
`bufferedAmount`, noticing a neighbour that vanished) lives here, behind a small interface:

    manager = PeerManager(signaling_client, listener, ice_servers=welcome.ice_servers)
    manager.connect(peer_id)                    # we offer (setup is queued and staggered)
    manager.handle_signal(from_id, data)        # feed every SignalMessage from the server
    manager.send(peer_id, payload) / has_room(peer_id) / buffered_amount(peer_id)
    listener.on_peer_opened / on_peer_message / on_peer_writable / on_peer_closed

Signal data convention (the browser player speaks it too; see docs/signaling.md):
`{"kind": "offer"|"answer", "sdp": str}` and
`{"kind": "candidate", "candidate": str, "sdpMid": str|null, "sdpMLineIndex": int|null}`.
aiortc does not trickle (its candidates are inside the SDP) but accepts trickled ones.

Signals normally go through the signaling server; with `connect(peer_id, via=neighbour)`, or for
an offer that came in `handle_signal(from_id, data, via=neighbour)` (peer exchange), every signal
of that connection goes through the `relay` callback instead (the driver puts it on the data
channel to that neighbour, streamer.swarm.exchange). Everything else (glare, one link per peer,
timeouts) is the same whichever way the signals travel.

Glare (both sides offer at once): the side whose peer id sorts greater (plain string comparison)
keeps its offer; the other side drops its own attempt and answers.

Rules this module never breaks:
- Whatever one peer sends (bad SDP, bad candidates, text frames, floods of offers) at most closes
  that peer's connection; it never raises into the caller or touches another peer.
- `on_peer_closed` is called exactly once for every peer that was announced (by `connect()` or
  by `on_peer_opened`), and never for one that was not.
- Listener callbacks are plain functions called from the event loop; an exception in one closes
  that peer (reason "listener_error") and is logged, it does not break aiortc's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from streamer.transport import sctp_tuning
from streamer.transport.ice_path import IcePath, ice_path, probe_rtt_s
from streamer.transport.signaling_client import (
    IceServer,
    IceServersUpdate,
    PeerLeft,
    Reconnected,
    SignalingEvent,
    SignalMessage,
)

logger = logging.getLogger(__name__)
sctp_tuning.apply()  # aiortc's SCTP loss recovery, tuned to RFC 9260 values (see the module)

OFFERER = "offerer"
ANSWERER = "answerer"

#: Close reason of an offer whose relaying neighbour went before the answer came back.
RELAY_GONE = "relay_gone"
_QUEUED = "queued"
_CONNECTING = "connecting"
_OPEN = "open"
_CLOSED = "closed"

_MAX_PEER_ID_CHARS = 64
_MAX_SDP_CHARS = 64 * 1024
_MAX_CANDIDATE_CHARS = 1024


class SignalPort(Protocol):
    """What the manager needs from the signaling client (SignalingClient fits; tests fake it)."""

    @property
    def peer_id(self) -> str | None: ...

    async def signal(self, to: str, data: Mapping[str, Any]) -> bool: ...


RelaySignal = Callable[[str, str, Mapping[str, Any]], bool]
"""(neighbour to relay through, peer the signal is for, signal data) -> queued?"""


class PeerListener(Protocol):
    """The swarm driver's side: called from the event loop, must not block."""

    def on_peer_opened(self, peer_id: str, role: str) -> None:
        """The data channel is open. `role` is "offerer" (we asked) or "answerer" (they asked)."""

    def on_peer_message(self, peer_id: str, data: bytes) -> None:
        """One binary message arrived from `peer_id`, in order."""

    def on_peer_writable(self, peer_id: str) -> None:
        """The send buffer drained to `buffer_low_bytes`: pull more data for this link."""

    def on_peer_closed(self, peer_id: str, reason: str) -> None:
        """The connection is gone (or never came up); `reason` is a short word for logs/stats."""


@dataclass(frozen=True)
class RtcConfig:
    """Knobs of the peer-connection manager (defaults suit a 1 Mbit/s stream on 2 cores)."""

    #: The ordered channel of every connection, negotiated out of band with a fixed id (both
    #: ends create it; the page does the same): it opens with the SCTP association, where one
    #: opened in band (DCEP) opens for the offerer a round trip later, when the answer to its
    #: DATA_CHANNEL_OPEN comes (test bed: 0.1-0.3 s of every link's setup).
    channel_label: str = "swarm"
    channel_id: int = 11
    #: The second, unordered channel, negotiated the same way: what `send(..., ordered=False)`
    #: uses. A message on it waits for no earlier one, so a lost packet holds back only its own
    #: message, not the control messages and other pieces sent after it.
    pieces_label: str = "swarm-pieces"
    pieces_channel_id: int = 10
    #: From the start of setup to the data channel being open.
    connect_timeout_s: float = 15.0
    #: Setups (ICE + DTLS + SCTP) in flight at once: opening many at once is slow in aiortc.
    max_concurrent_setups: int = 3
    #: Minimum gap between two setups we start.
    setup_interval_s: float = 0.05
    #: `on_peer_writable` fires when the buffer drains to this (bufferedAmountLowThreshold).
    buffer_low_bytes: int = 8 * 1024
    #: `has_room` is False from this much buffered data on: two 8 KiB pieces per link at most,
    #: so a control message never waits behind much of this link's data (the driver's uplink
    #: gate bounds all links together). 1 MiB was seconds of queue on a home uplink.
    buffer_high_bytes: int = 16 * 1024
    #: Largest message `send` accepts (the swarm wire protocol keeps every message under 64 KiB).
    max_message_bytes: int = 64 * 1024
    #: Connections (open or being set up) at most; offers beyond it are ignored.
    max_peers: int = 64
    #: Data waiting to be sent for this long without any of it leaving means the peer is gone.
    stall_timeout_s: float = 10.0
    #: `bytes_in_flight` leaves out a link whose data has had no acknowledgement for this long
    #: (a vanished peer's unacknowledged data must not hold back what goes to the others).
    ack_stall_s: float = 1.0
    #: Nothing received for this long closes the peer (None: rely on ICE consent, ~30 s).
    idle_timeout_s: float | None = None
    #: How often timeouts are checked.
    watchdog_interval_s: float = 0.25
    #: "relay": use TURN relays only (as the browser's iceTransportPolicy); "all": any path.
    ice_transport_policy: str = "all"
    #: How often each open connection's RTT is measured (one STUN check; None: never).
    rtt_probe_interval_s: float | None = 5.0
    #: Trickled candidates kept per peer until its remote description is set.
    max_pending_candidates: int = 32
    #: Signals queued per peer while earlier ones are processed.
    max_inbox_signals: int = 64


@dataclass
class PeerStats:
    """Counters of one connection (payload bytes of data-channel messages)."""

    bytes_sent: int = 0
    bytes_received: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    #: Seconds from the start of setup to the data channel being open.
    setup_s: float | None = None
    #: Milliseconds from the start of setup to each step: "described" (our offer or answer made,
    #: candidates gathered), "answered" (the answer applied, or ours sent), "ice" (connected),
    #: "dtls" (its handshake done), "open" (the data channel): where a link's setup time goes.
    setup_ms: dict[str, float] = field(default_factory=dict)
    #: The selected ICE candidate pair and its last measured RTT (once open).
    ice: IcePath | None = None


@dataclass(eq=False)
class _Peer:
    peer_id: str
    role: str
    state: str
    started_at: float
    announced: bool
    pc: RTCPeerConnection | None = None
    channel: RTCDataChannel | None = None
    pieces_channel: RTCDataChannel | None = None
    """The unordered channel for `send(..., ordered=False)` (negotiated: both ends make it)."""
    remote_description_set: bool = False
    pending_candidates: list[RTCIceCandidate] = field(default_factory=list)
    stats: PeerStats = field(default_factory=PeerStats)
    last_received_at: float = 0.0
    last_drained_bytes: int = 0
    last_progress_at: float = 0.0
    acked_bytes: int = 0
    """Bytes SCTP had acknowledged (sent minus outstanding) when the watchdog last looked."""
    acked_at: float = 0.0
    """When that count last rose, or nothing was outstanding."""
    holds_setup_slot: bool = False
    via: str | None = None
    """The neighbour relaying this connection's signals (peer exchange); None: the server."""


def _buffered(peer: _Peer) -> int:
    """Bytes queued on both of a connection's channels and not yet handed to SCTP."""
    total = int(peer.channel.bufferedAmount) if peer.channel is not None else 0
    if peer.pieces_channel is not None:
        total += int(peer.pieces_channel.bufferedAmount)
    return total


def _outstanding(peer: _Peer) -> int:
    """Bytes handed to this connection and not yet acknowledged: queued on its channels, in
    SCTP's outbound queue or in flight (aiortc 1.16's `_outbound_queue` and `_flight_size`;
    without them, the channels' queues only)."""
    total = _buffered(peer)
    sctp = peer.pc.sctp if peer.pc is not None else None
    if sctp is not None:
        total += int(getattr(sctp, "_flight_size", 0))
        total += sum(len(chunk.user_data) for chunk in getattr(sctp, "_outbound_queue", ()))
    return total


def _recovery(peer: _Peer) -> dict[str, Any] | None:
    """Loss recovery of a connection's SCTP association so far (None before it has one)."""
    sctp = peer.pc.sctp if peer.pc is not None else None
    return sctp_tuning.recovery(sctp) if sctp is not None else None


def _below(channel: RTCDataChannel, limit_bytes: int) -> bool:
    """Room on one channel. Each channel counts alone: a channel at the high mark drains through
    `buffer_low_bytes`, whose event (`on_peer_writable`) then finds room; a sum over both could
    stay at the mark while neither channel crosses its low mark, and the link would wait for
    an event that never comes."""
    return int(channel.bufferedAmount) < limit_bytes


def to_rtc_ice_servers(servers: Iterable[IceServer]) -> list[RTCIceServer]:
    """Convert the welcome's ICE servers; unusable URLs are dropped with a warning."""
    result = []
    for server in servers:
        urls = [u for u in server.urls if u.startswith(("stun:", "turn:", "turns:"))]
        if len(urls) != len(server.urls):
            logger.warning("ignoring ICE server URLs aiortc cannot use: %s", server.urls)
        if urls:
            result.append(
                RTCIceServer(urls=urls, username=server.username, credential=server.credential)
            )
    return result


def parse_trickled_candidate(data: Mapping[str, Any]) -> RTCIceCandidate | None:
    """A browser's trickled candidate as aiortc wants it; None for end-of-candidates.

    Raises ValueError when the object is not a candidate.
    """
    text = data.get("candidate")
    if text is None or text == "":
        return None
    if not isinstance(text, str) or len(text) > _MAX_CANDIDATE_CHARS:
        raise ValueError("'candidate' must be a short string")
    sdp_mid = data.get("sdpMid")
    mline_index = data.get("sdpMLineIndex")
    if sdp_mid is not None and not isinstance(sdp_mid, str):
        raise ValueError("'sdpMid' must be a string or null")
    if mline_index is not None and (
        isinstance(mline_index, bool) or not isinstance(mline_index, int)
    ):
        raise ValueError("'sdpMLineIndex' must be an integer or null")
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        candidate = candidate_from_sdp(text)
    except (AssertionError, ValueError, IndexError, KeyError) as error:
        raise ValueError(f"unparsable candidate {text[:80]!r}") from error
    candidate.sdpMid = sdp_mid
    candidate.sdpMLineIndex = mline_index if mline_index is not None or sdp_mid else 0
    return candidate


def dispatch_signaling_event(manager: PeerManager, event: SignalingEvent) -> bool:
    """Hand the manager what concerns it; True when the event was fully consumed.

    The driver's signaling loop calls this first and handles the rest itself (peers, media,
    broadcast_ended, ...). `Reconnected` updates the ICE servers but is still the driver's too.
    """
    if isinstance(event, IceServersUpdate):
        manager.set_ice_servers(event.ice_servers)
        return True
    if isinstance(event, SignalMessage):
        manager.handle_signal(event.from_id, event.data)
        return True
    if isinstance(event, PeerLeft):
        manager.handle_peer_left(event.peer_id)
        return False
    if isinstance(event, Reconnected):
        manager.set_ice_servers(event.welcome.ice_servers)
    return False


class PeerManager:
    """Opens, feeds and closes the data channels of one peer's neighbours."""

    def __init__(
        self,
        signaling: SignalPort,
        listener: PeerListener,
        *,
        ice_servers: Iterable[IceServer] = (),
        config: RtcConfig | None = None,
        relay: RelaySignal | None = None,
    ) -> None:
        self._signaling = signaling
        self._listener = listener
        self._relay = relay
        self.config = config or RtcConfig()
        RTCIceTransportPolicy(self.config.ice_transport_policy)  # ValueError if unknown
        self._ice_servers = to_rtc_ice_servers(ice_servers)
        self._loop = asyncio.get_running_loop()
        self._peers: dict[str, _Peer] = {}
        self._setup_queue: deque[str] = deque()
        self._setups_in_flight = 0
        self._setup_wakeup = asyncio.Event()
        self._inbox: dict[str, deque[tuple[Mapping[str, Any], str | None]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        #: Totals over every connection, closed ones included.
        self.total_bytes_sent = 0
        self.total_messages_sent = 0
        self.total_bytes_received = 0
        #: Bytes sent on connections that closed before SCTP acknowledged them.
        self.bytes_abandoned = 0
        #: SCTP loss recovery of the connections closed so far (sctp_tuning.combined).
        self._closed_recovery: dict[str, Any] | None = None
        #: Signals refused as malformed (any peer).
        self.bad_signals = 0
        #: Connections opened so far whose signals went through a neighbour (peer exchange).
        self.opened_via_exchange = 0
        #: Connections opened so far, by candidate pair type (host, srflx, prflx, relay).
        self.pair_types_opened: Counter[str] = Counter()
        self._setup_task = self._spawn(self._setup_worker(), "rtc-setup")
        self._watchdog_task = self._spawn(self._watchdog(), "rtc-watchdog")
        self._rtt_task = (
            self._spawn(self._rtt_prober(self.config.rtt_probe_interval_s), "rtc-rtt")
            if self.config.rtt_probe_interval_s is not None
            else None
        )

    # -- the driver's interface ------------------------------------------------------------------

    def set_ice_servers(self, servers: Iterable[IceServer]) -> None:
        """Use these STUN/TURN servers for connections set up from now on (e.g. a new welcome)."""
        self._ice_servers = to_rtc_ice_servers(servers)

    def connect(self, peer_id: str, via: str | None = None) -> bool:
        """Ask for a connection to `peer_id` (we offer); False if one exists or we are full.

        The setup is queued and started when a setup slot is free; the outcome is
        `on_peer_opened` or `on_peer_closed`. With `via`, its signals go through that
        neighbour (the relay callback) rather than the server.
        """
        if via is not None and self._relay is None:
            return False
        if self._closed or peer_id in self._peers or peer_id == self._signaling.peer_id:
            return False
        if len(self._peers) >= self.config.max_peers:
            return False
        now = self._loop.time()
        self._peers[peer_id] = _Peer(
            peer_id=peer_id, role=OFFERER, state=_QUEUED, started_at=now, announced=True, via=via
        )
        self._setup_queue.append(peer_id)
        self._setup_wakeup.set()
        return True

    def disconnect(self, peer_id: str, reason: str = "local") -> None:
        """Close the connection to `peer_id` (on_peer_closed follows if it was announced)."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._close_peer(peer, reason)

    def handle_signal(self, from_id: str, data: Mapping[str, Any], via: str | None = None) -> None:
        """Feed one signal from the server (or, with `via`, relayed by that neighbour).
        Processed in order per peer, in the background."""
        if self._closed:
            return
        if not isinstance(from_id, str) or not 0 < len(from_id) <= _MAX_PEER_ID_CHARS:
            self.bad_signals += 1
            return
        inbox = self._inbox.get(from_id)
        if inbox is None:
            if len(self._inbox) >= self.config.max_peers:
                self.bad_signals += 1
                return
            inbox = self._inbox[from_id] = deque()
            self._spawn(self._drain_inbox(from_id, inbox), f"rtc-signals-{from_id}")
        if len(inbox) >= self.config.max_inbox_signals:
            self.bad_signals += 1
            logger.warning("peer %s floods signals; dropping one", from_id)
            return
        inbox.append((data, via))

    def handle_peer_left(self, peer_id: str) -> None:
        """The server says `peer_id` is gone (a goodbye, or not back within the server's grace
        period): close it now, open or not, instead of waiting for ICE to notice."""
        peer = self._peers.get(peer_id)
        if peer is not None:
            self._close_peer(peer, "peer_left")

    def send(self, peer_id: str, data: bytes, ordered: bool = True) -> bool:
        """Queue one binary message; False if the peer is not open (nothing is sent).

        Reliable; in order with every other ordered message, or (ordered=False, on the
        connection's unordered channel once it is open) delivered as soon as it is whole, ahead
        of anything sent earlier that is waiting for a retransmission. Call `has_room` first:
        this never refuses for a full buffer.
        """
        if len(data) > self.config.max_message_bytes:
            raise ValueError(
                f"message of {len(data)} bytes exceeds {self.config.max_message_bytes}"
            )
        peer = self._peers.get(peer_id)
        if peer is None or peer.state != _OPEN or peer.channel is None:
            return False
        channel = peer.channel
        pieces = peer.pieces_channel
        if not ordered and pieces is not None and pieces.readyState == "open":
            channel = pieces
        try:
            channel.send(bytes(data))
        except Exception as error:  # the channel died under us (InvalidStateError, ...)
            logger.debug("send to %s failed: %s", peer_id, error)
            self._close_peer(peer, "send_failed")
            return False
        peer.stats.bytes_sent += len(data)
        peer.stats.messages_sent += 1
        self.total_bytes_sent += len(data)
        self.total_messages_sent += 1
        return True

    def buffered_amount(self, peer_id: str) -> int:
        """Bytes queued on this link and not yet handed to SCTP (0 for unknown peers)."""
        peer = self._peers.get(peer_id)
        if peer is None or peer.channel is None:
            return 0
        return _buffered(peer)

    def bytes_outstanding(self) -> int:
        """Bytes handed to open connections and not yet acknowledged (queued or in flight)."""
        return sum(_outstanding(peer) for peer in self._peers.values())

    def bytes_in_flight(self) -> int:
        """Bytes handed to open connections and not yet acknowledged, leaving out connections
        that have had no acknowledgement for `ack_stall_s` (as the watchdog last saw them)."""
        fresh_after = self._loop.time() - self.config.ack_stall_s
        return sum(
            _outstanding(peer)
            for peer in self._peers.values()
            if peer.state == _OPEN and peer.acked_at >= fresh_after
        )

    def bytes_delivered(self) -> int:
        """Bytes of every message sent so far that SCTP has delivered (acknowledged), all
        connections together: what the uplink carried, not what it was handed."""
        outstanding = self.bytes_outstanding()
        return max(0, self.total_bytes_sent - self.bytes_abandoned - outstanding)

    def buffered_total(self) -> int:
        """Bytes queued on all open links and not yet handed to SCTP."""
        return sum(
            _buffered(peer)
            for peer in self._peers.values()
            if peer.state == _OPEN and peer.channel is not None
        )

    def has_room(self, peer_id: str) -> bool:
        """True when the link is open and each of its channels is below `buffer_high_bytes`."""
        peer = self._peers.get(peer_id)
        return (
            peer is not None
            and peer.state == _OPEN
            and peer.channel is not None
            and _below(peer.channel, self.config.buffer_high_bytes)
            and (
                peer.pieces_channel is None
                or _below(peer.pieces_channel, self.config.buffer_high_bytes)
            )
        )

    def stats(self, peer_id: str) -> PeerStats | None:
        """Counters of a live connection (None if there is none)."""
        peer = self._peers.get(peer_id)
        return peer.stats if peer is not None else None

    def sctp_recovery(self, peer_id: str) -> dict[str, Any] | None:
        """Loss recovery of a live connection's SCTP association (sctp_tuning.recovery)."""
        peer = self._peers.get(peer_id)
        return _recovery(peer) if peer is not None else None

    def sctp_recovery_total(self) -> dict[str, Any] | None:
        """SCTP loss recovery over every connection so far, closed ones included."""
        figures = [f for p in self._peers.values() if (f := _recovery(p)) is not None]
        if self._closed_recovery is not None:
            figures.append(self._closed_recovery)
        return sctp_tuning.combined(figures)

    def open_peers_via_exchange(self) -> list[str]:
        """Open connections whose signals went through a neighbour (peer exchange)."""
        return [p.peer_id for p in self._peers.values() if p.state == _OPEN and p.via is not None]

    def open_peers(self) -> list[str]:
        """Peer ids whose data channel is open."""
        return [p.peer_id for p in self._peers.values() if p.state == _OPEN]

    def pending_peers(self) -> list[str]:
        """Peer ids being set up (queued or connecting)."""
        return [p.peer_id for p in self._peers.values() if p.state in (_QUEUED, _CONNECTING)]

    async def close(self) -> None:
        """Close every connection (reason "shutdown") and wait for aiortc to let go."""
        if self._closed:
            return
        self._closed = True
        for peer in list(self._peers.values()):
            self._close_peer(peer, "shutdown")
        for task in (self._setup_task, self._watchdog_task, self._rtt_task):
            if task is not None:
                task.cancel()
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=5.0)
        for task in pending:
            if not task.done():
                task.cancel()

    # -- setup -----------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _setup_worker(self) -> None:
        """Start queued offers one by one, at most max_concurrent_setups in flight."""
        while True:
            await self._setup_wakeup.wait()
            self._setup_wakeup.clear()
            while self._setup_queue and self._setups_in_flight < self.config.max_concurrent_setups:
                peer = self._peers.get(self._setup_queue.popleft())
                if peer is None or peer.state != _QUEUED:
                    continue
                self._take_setup_slot(peer)
                self._spawn(self._offer(peer), f"rtc-offer-{peer.peer_id}")
                await asyncio.sleep(self.config.setup_interval_s)

    def _take_setup_slot(self, peer: _Peer) -> None:
        peer.state = _CONNECTING
        peer.started_at = self._loop.time()
        peer.holds_setup_slot = True
        self._setups_in_flight += 1

    def _release_setup_slot(self, peer: _Peer) -> None:
        if peer.holds_setup_slot:
            peer.holds_setup_slot = False
            self._setups_in_flight -= 1
            self._setup_wakeup.set()

    def _new_pc(self, peer: _Peer) -> RTCPeerConnection:
        # iceServers=[] and not None: None would make aiortc use Google's public STUN server.
        pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=list(self._ice_servers),
                iceTransportPolicy=RTCIceTransportPolicy(self.config.ice_transport_policy),
            )
        )
        peer.pc = pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if peer.pc is pc and pc.connectionState in ("failed", "closed"):
                self._close_peer(peer, f"ice_{pc.connectionState}")
            elif peer.pc is pc and pc.connectionState == "connected":
                self._setup_step(peer, "dtls")

        @pc.on("iceconnectionstatechange")
        def on_ice_state() -> None:
            if peer.pc is pc and pc.iceConnectionState == "completed":
                self._setup_step(peer, "ice")

        return pc

    def _attach_channels(self, peer: _Peer, pc: RTCPeerConnection) -> None:
        """Both channels, negotiated (both ends make them): the ordered one's opening opens the
        link; the unordered one's messages go to the listener as the ordered one's do."""
        channel = pc.createDataChannel(
            self.config.channel_label, ordered=True, negotiated=True, id=self.config.channel_id
        )
        peer.channel = channel

        @channel.on("open")
        def on_open() -> None:
            if peer.channel is channel:
                self._on_open(peer)

        self._listen_to(peer, channel, lambda: peer.channel is channel)
        pieces = pc.createDataChannel(
            self.config.pieces_label,
            ordered=False,
            negotiated=True,
            id=self.config.pieces_channel_id,
        )
        peer.pieces_channel = pieces
        self._listen_to(peer, pieces, lambda: peer.pieces_channel is pieces)

    def _listen_to(self, peer: _Peer, channel: RTCDataChannel, current: Callable[[], bool]) -> None:
        """Messages, drains and the close of one of peer's channels (while `current()`)."""
        channel.bufferedAmountLowThreshold = self.config.buffer_low_bytes

        @channel.on("message")
        def on_message(data: bytes | str) -> None:
            if current():
                self._on_message(peer, data)

        @channel.on("bufferedamountlow")
        def on_low() -> None:
            if current() and peer.state == _OPEN:
                self._call_listener(peer, "on_peer_writable", peer.peer_id)

        @channel.on("close")
        def on_close() -> None:
            if current():
                self._close_peer(peer, "channel_closed")

    async def _offer(self, peer: _Peer) -> None:
        pc = self._new_pc(peer)
        try:
            self._attach_channels(peer, pc)
            await pc.setLocalDescription(await pc.createOffer())
            if peer.pc is not pc or peer.state == _CLOSED:
                return  # replaced (lost glare) or closed meanwhile
            self._setup_step(peer, "described")
            await self._send_signal(peer, {"kind": "offer", "sdp": pc.localDescription.sdp})
        except Exception as error:
            if peer.pc is pc:
                logger.warning("offer to %s failed: %s", peer.peer_id, error)
                self._close_peer(peer, "setup_failed")

    # -- signals ---------------------------------------------------------------------------------

    async def _send_signal(self, peer: _Peer, data: Mapping[str, Any]) -> None:
        """Through the neighbour relaying this connection, or the server."""
        if peer.via is None:
            await self._signaling.signal(peer.peer_id, data)
        elif self._relay is None or not self._relay(peer.via, peer.peer_id, data):
            logger.info("relay %s cannot carry a signal to %s", peer.via, peer.peer_id)
            if data.get("kind") == "offer":
                self._close_peer(peer, RELAY_GONE)  # no answer can come back: say so now

    async def _drain_inbox(
        self, from_id: str, inbox: deque[tuple[Mapping[str, Any], str | None]]
    ) -> None:
        try:
            while inbox and not self._closed:
                data, via = inbox.popleft()
                try:
                    await self._process_signal(from_id, data, via)
                except Exception as error:
                    self.bad_signals += 1
                    logger.warning("bad signal from %s: %s", from_id, error)
                    peer = self._peers.get(from_id)
                    if peer is not None and peer.state != _OPEN:
                        self._close_peer(peer, "bad_signal")
        finally:
            self._inbox.pop(from_id, None)

    async def _process_signal(
        self, from_id: str, data: Mapping[str, Any], via: str | None = None
    ) -> None:
        if not isinstance(data, Mapping):
            raise ValueError("signal data is not an object")
        kind = data.get("kind")
        if kind in ("offer", "answer"):
            sdp = data.get("sdp")
            if not isinstance(sdp, str) or not sdp or len(sdp) > _MAX_SDP_CHARS:
                raise ValueError(f"{kind} without a usable 'sdp'")
            if kind == "offer":
                await self._on_offer(from_id, sdp, via)
            else:
                await self._on_answer(from_id, sdp)
        elif kind == "candidate":
            await self._on_candidate(from_id, data)
        else:
            logger.debug("ignoring signal of kind %r from %s", kind, from_id)

    async def _on_offer(self, from_id: str, sdp: str, via: str | None = None) -> None:
        peer = self._peers.get(from_id)
        local_id = self._signaling.peer_id or ""
        if peer is not None:
            glare = peer.role == OFFERER and not peer.remote_description_set
            if glare and peer.state == _QUEUED:
                self._discard_attempt(peer)  # we had not offered yet: simply answer theirs
            elif glare and peer.state == _CONNECTING:
                if local_id > from_id:
                    logger.debug("glare with %s: our offer stands", from_id)
                    return
                logger.debug("glare with %s: answering theirs", from_id)
                self._discard_attempt(peer)
            else:
                # The remote started over (e.g. its page reconnected): the new offer wins.
                self._close_peer(peer, "replaced")
                peer = None
        if peer is None:
            if len(self._peers) >= self.config.max_peers:
                logger.info("ignoring offer from %s: %d peers already", from_id, len(self._peers))
                return
            peer = _Peer(
                peer_id=from_id,
                role=ANSWERER,
                state=_QUEUED,
                started_at=self._loop.time(),
                announced=False,
            )
            self._peers[from_id] = peer
        peer.role = ANSWERER
        peer.via = via if self._relay is not None else None  # the answer goes back that way
        self._take_setup_slot(peer)
        pc = self._new_pc(peer)

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            # Both channels are negotiated: one opened in band is a peer of another protocol
            # version (or a hostile one), refused.
            logger.info("peer %s opened channel %r in band; refused", from_id, channel.label)
            channel.close()

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as error:
            raise ValueError(f"unusable offer: {error}") from error
        peer.remote_description_set = True
        self._attach_channels(peer, pc)
        await self._apply_pending_candidates(peer)
        await pc.setLocalDescription(await pc.createAnswer())
        if peer.pc is pc and peer.state != _CLOSED:
            self._setup_step(peer, "described")
            await self._send_signal(peer, {"kind": "answer", "sdp": pc.localDescription.sdp})
            self._setup_step(peer, "answered")

    async def _on_answer(self, from_id: str, sdp: str) -> None:
        peer = self._peers.get(from_id)
        if (
            peer is None
            or peer.role != OFFERER
            or peer.pc is None
            or peer.remote_description_set
            or peer.pc.signalingState != "have-local-offer"
        ):
            logger.debug("ignoring unexpected answer from %s", from_id)
            return
        try:
            await peer.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        except Exception as error:
            raise ValueError(f"unusable answer: {error}") from error
        peer.remote_description_set = True
        self._setup_step(peer, "answered")
        await self._apply_pending_candidates(peer)

    def _setup_step(self, peer: _Peer, step: str) -> None:
        """Note when a step of peer's setup happened (the first time: see PeerStats.setup_ms)."""
        if step not in peer.stats.setup_ms:
            peer.stats.setup_ms[step] = round((self._loop.time() - peer.started_at) * 1000, 1)

    async def _on_candidate(self, from_id: str, data: Mapping[str, Any]) -> None:
        peer = self._peers.get(from_id)
        if peer is None or peer.pc is None or peer.state == _CLOSED:
            return
        candidate = parse_trickled_candidate(data)
        if candidate is None:
            return  # end-of-candidates: aiortc has nothing to do with it
        if not peer.remote_description_set:
            if len(peer.pending_candidates) < self.config.max_pending_candidates:
                peer.pending_candidates.append(candidate)
            return
        await self._add_candidate(peer, candidate)

    async def _apply_pending_candidates(self, peer: _Peer) -> None:
        pending, peer.pending_candidates = peer.pending_candidates, []
        for candidate in pending:
            await self._add_candidate(peer, candidate)

    async def _add_candidate(self, peer: _Peer, candidate: RTCIceCandidate) -> None:
        if peer.pc is None:
            return
        try:
            await peer.pc.addIceCandidate(candidate)
        except Exception as error:  # one bad candidate is not worth the connection
            self.bad_signals += 1
            logger.debug("candidate from %s refused: %s", peer.peer_id, error)

    # -- life and death --------------------------------------------------------------------------

    def _on_open(self, peer: _Peer) -> None:
        if peer.state != _CONNECTING:
            return
        now = self._loop.time()
        peer.state = _OPEN
        peer.stats.setup_s = now - peer.started_at
        self._setup_step(peer, "open")
        peer.last_received_at = now
        peer.last_progress_at = now
        peer.acked_at = now
        self._release_setup_slot(peer)
        peer.stats.ice = ice_path(peer.pc)
        if peer.stats.ice is not None:
            self.pair_types_opened[peer.stats.ice.pair_type] += 1
            if self._rtt_task is not None:
                self._spawn(self._probe(peer), f"rtc-rtt-{peer.peer_id}")
        peer.announced = True
        if peer.via is not None:
            self.opened_via_exchange += 1
        self._call_listener(peer, "on_peer_opened", peer.peer_id, peer.role)

    def _on_message(self, peer: _Peer, data: bytes | str) -> None:
        if peer.state != _OPEN:
            return
        if not isinstance(data, bytes):
            logger.info("peer %s sent a text message; closing it", peer.peer_id)
            self._close_peer(peer, "bad_message")
            return
        peer.last_received_at = self._loop.time()
        peer.stats.bytes_received += len(data)
        peer.stats.messages_received += 1
        self.total_bytes_received += len(data)
        self._call_listener(peer, "on_peer_message", peer.peer_id, data)

    def _call_listener(self, peer: _Peer, method: str, *args: Any) -> None:
        try:
            getattr(self._listener, method)(*args)
        except Exception:
            logger.exception("%s(%s) raised; closing that peer", method, peer.peer_id)
            if method != "on_peer_closed":
                self._close_peer(peer, "listener_error")

    def _discard_attempt(self, peer: _Peer) -> None:
        """Drop our own half-made connection (lost glare) but keep the peer record."""
        self._release_setup_slot(peer)
        old_pc, peer.pc, peer.channel, peer.pieces_channel = peer.pc, None, None, None
        peer.pending_candidates = []
        peer.remote_description_set = False
        peer.state = _QUEUED
        if old_pc is not None:
            self._spawn(self._close_pc(old_pc), f"rtc-close-{peer.peer_id}")

    def _close_peer(self, peer: _Peer, reason: str) -> None:
        if peer.state == _CLOSED:
            return
        peer.state = _CLOSED
        self._release_setup_slot(peer)
        self.bytes_abandoned += _outstanding(peer)
        recovery = _recovery(peer)
        if recovery is not None:
            figures = [recovery] + ([self._closed_recovery] if self._closed_recovery else [])
            self._closed_recovery = sctp_tuning.combined(figures)
        if self._peers.get(peer.peer_id) is peer:
            del self._peers[peer.peer_id]
        pc, peer.pc, peer.channel, peer.pieces_channel = peer.pc, None, None, None
        if pc is not None:
            self._spawn(self._close_pc(pc), f"rtc-close-{peer.peer_id}")
        logger.debug("peer %s closed: %s", peer.peer_id, reason)
        if peer.announced:
            self._call_listener(peer, "on_peer_closed", peer.peer_id, reason)
        self._close_stranded_by(peer.peer_id)

    def _close_stranded_by(self, gone_id: str) -> None:
        """Offers of ours relayed by a neighbour that just went can get no answer: closed now,
        so the caller can try another way at once rather than after connect_timeout_s. Links
        that have their answer (or are answering) need no relay any more and are left alone."""
        for other in list(self._peers.values()):
            waiting = other.state in (_QUEUED, _CONNECTING) and not other.remote_description_set
            if other.via == gone_id and other.role == OFFERER and waiting:
                self._close_peer(other, RELAY_GONE)

    @staticmethod
    async def _close_pc(pc: RTCPeerConnection) -> None:
        with contextlib.suppress(Exception):
            await pc.close()

    async def _probe(self, peer: _Peer) -> None:
        """Measure one peer's RTT on its selected pair (the path is re-read: it may change)."""
        pc = peer.pc
        if pc is None or peer.state != _OPEN:
            return
        rtt_s = await probe_rtt_s(pc)
        if peer.pc is not pc or peer.state != _OPEN:
            return
        path = ice_path(pc) or peer.stats.ice
        if path is not None:
            peer.stats.ice = path.with_rtt(rtt_s if rtt_s is not None else path.rtt_s)

    async def _rtt_prober(self, interval_s: float) -> None:
        """Every `interval_s`, one STUN check per open connection, all at once."""
        while True:
            await asyncio.sleep(interval_s)
            peers = [p for p in self._peers.values() if p.state == _OPEN]
            if peers:
                await asyncio.gather(*(self._probe(p) for p in peers), return_exceptions=True)

    async def _watchdog(self) -> None:
        """Close connections that time out during setup, stall while sending, or go silent."""
        config = self.config
        while True:
            await asyncio.sleep(config.watchdog_interval_s)
            now = self._loop.time()
            for peer in list(self._peers.values()):
                if peer.state == _CONNECTING:
                    if now - peer.started_at > config.connect_timeout_s:
                        self._close_peer(peer, "timeout")
                elif peer.state == _QUEUED and peer.role == OFFERER:
                    # Waiting for a slot counts too: a peer that never opens is reported.
                    if now - peer.started_at > config.connect_timeout_s * 4:
                        self._close_peer(peer, "timeout")
                elif peer.state == _OPEN and peer.channel is not None:
                    buffered = _buffered(peer)
                    drained = peer.stats.bytes_sent - buffered
                    if buffered == 0 or drained > peer.last_drained_bytes:
                        peer.last_progress_at = now
                    peer.last_drained_bytes = drained
                    outstanding = _outstanding(peer)
                    acked = peer.stats.bytes_sent - outstanding
                    if outstanding == 0 or acked > peer.acked_bytes:
                        peer.acked_at = now
                    peer.acked_bytes = acked
                    if now - peer.last_progress_at > config.stall_timeout_s:
                        self._close_peer(peer, "stalled")
                    elif (
                        config.idle_timeout_s is not None
                        and now - peer.last_received_at > config.idle_timeout_s
                    ):
                        self._close_peer(peer, "idle")
