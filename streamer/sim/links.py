"""A per-site network for the simulator: what the namespace test bed (`streamer netbed`) does to
the swarm's messages, in virtual time.

Model (SimNetwork's, with these differences):
- every node has an access link (`Access`): a one-way delay, a per-packet loss, a jitter and an
  uplink buffer of `queue_s` at its uplink rate. A message from A to B is delayed by A's delay plus
  B's (and both jitters), and a packet of it is lost with A's loss or B's, as on the bed; between a
  node behind a symmetric NAT and one behind any NAT the path goes through the TURN server's site
  (`turn_delay_s` twice more);
- every link (a data channel: reliable, ordered, one per neighbour pair) has a sender-side
  transport buffer, a FIFO of control AND data messages in the order they were sent. The node
  pulls data from its core for a link only while that buffer holds less than
  `buffer_high_bytes`, and once it reached it, only after it drained to `buffer_low_bytes` (the
  driver's bufferedAmount rule, `streamer.transport.rtc.RtcConfig`). A control message sent while
  the link's buffer holds data waits behind that data;
- the transport moves messages from the links' buffers into the node's uplink, round-robin over
  links, while the uplink's FIFO holds less than `queue_s` of data (loss-based congestion control
  keeps a tbf's buffer full); so every message, control included, waits behind up to `queue_s` of
  queued data before it is serialised at the uplink rate; a message costs its bytes plus a packet
  header per packet (`packet_header_bytes`: a small message is a packet of its own), times
  1 + `wire_overhead` (what aiortc's SCTP leaves unused behind a tbf: full packets measured at
  0.75 of the rate);
- a receiver acknowledges what it gets: a SACK (`sack_bytes`) goes into its own uplink after
  every two full packets of a link's data, or for a message coming `sack_delay_s` after the
  link's last SACK; so a viewer taking in a lot over a narrow uplink pays for it there;
- a link's transport rate is at most the throughput a loss-based congestion control sustains on
  its path, 1.22 x packet / (RTT x sqrt(loss)) (Mathis et al.; the aiortc data channel measured on
  the bed: ~1.0 Mbit/s at 90 ms and 1-1.5% loss, 0.55 Mbit/s at 140 ms and 2%);
- a message loses one of its packets with 1 - (1 - loss)^packets and then arrives later by a fast
  retransmit (one path RTT) when more of the link's data follows it, else by a retransmission
  timeout (`rto_s`, SCTP's minimum 1 s); what the link sends after it on the ordered channel
  waits (head-of-line), pieces and requests (the unordered channel's) do not;
- a connection takes `setup_base_s` + `setup_rtts` path round trips to open (signaling, ICE,
  DTLS, SCTP), not SimNetwork's fixed delay.
Downloads stay unlimited (the bed shapes uplinks only). Rules: as SimNetwork's: no wall clock,
every random draw from the one seeded random.Random, in the order events run.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from streamer.node.uplink_gate import GATE_POLL_S, UPLINK_SAMPLE_S, UplinkGate
from streamer.protocol.messages import travels_unordered
from streamer.sim.network import Observer, SimNetwork, SimNode, Tap
from streamer.swarm.drain import send_data, send_ready_control

NATS_BEHIND = frozenset({"cone", "symmetric"})
EPS_S = 1e-9


@dataclass(frozen=True, slots=True)
class Access:
    """One node's access link (a bed site's link), one way."""

    delay_s: float = 0.015
    loss: float = 0.0
    """Per packet, in [0, 1)."""
    jitter_s: float = 0.0
    queue_s: float = 0.2
    """The uplink's buffer, in seconds at the node's uplink rate."""
    nat: str = "none"


@dataclass(frozen=True, slots=True)
class Transport:
    """The data channel's side of the model: buffers, packets, recovery, set-up."""

    buffer_high_bytes: int = 1024 * 1024
    buffer_low_bytes: int = 256 * 1024
    packet_bytes: int = 1200
    """Payload per packet (aiortc's SCTP: 1,200 bytes of user data)."""
    packet_header_bytes: int = 85
    """Uplink bytes per packet beyond its payload (SCTP 28 + DTLS ~29 + UDP 8 + IP 20). Every
    message goes in packets of its own (aiortc does not bundle, browsers rarely can): a have of
    a few bytes costs a packet."""
    wire_overhead: float = 0.24
    """Uplink time per wire byte beyond the packet: what aiortc's SCTP leaves unused behind a tbf
    (its data channel carried 1.5 Mbit/s through a 2 Mbit/s uplink without loss: full packets
    cost 1 / 0.75 of their payload, headers included)."""
    sack_bytes: int = 95
    """A SACK's packet on the receiver's uplink. The receiver sends one once two full packets of
    user data came since its last one, else for the first message that comes sack_delay_s after
    its last one (streamer.transport.sctp_tuning: at once after two full packets, else after
    100 ms)."""
    sack_delay_s: float = 0.1
    rto_s: float = 1.0
    loss_throughput: bool = True
    """Cap each link at the Mathis throughput of its path (False: only the uplink limits)."""
    setup_base_s: float = 0.5
    setup_rtts: float = 6.0
    uplink_gate: bool = True
    """The drivers' uplink gate (streamer.node.uplink_gate): a link with data already buffered
    takes more only while all the node's links together buffer less than the gate's window
    (0.1 s of the measured drain rate); held-back links try again every GATE_POLL_S."""
    unordered_channel: bool = True
    """As the drivers do: pieces and requests (`UNORDERED_TYPES`) on the connection's unordered
    channel, so one held by a retransmission holds nothing sent after it (and waits for nothing
    sent before it); every other message stays ordered. False: everything on one ordered
    channel (before 157c1e6)."""

    def __post_init__(self) -> None:
        if not 0 < self.buffer_low_bytes <= self.buffer_high_bytes:
            raise ValueError("need 0 < buffer_low_bytes <= buffer_high_bytes")
        if self.packet_bytes <= 0 or self.wire_overhead < 0 or self.rto_s < 0:
            raise ValueError("packet size, overhead and RTO must be positive")


def path_delay_s(a: Access, b: Access, turn_delay_s: float | None) -> float:
    """One way from a's site to b's: both access links, and the TURN site's twice when relayed."""
    extra = 2 * turn_delay_s if turn_delay_s is not None and needs_turn(a, b) else 0.0
    return a.delay_s + b.delay_s + extra


def needs_turn(a: Access, b: Access) -> bool:
    """A symmetric NAT's mapping differs per destination, so only a host without a NAT (which
    accepts any source) can answer it directly; a pair with a symmetric end goes via TURN."""
    return (a.nat == "symmetric" and b.nat in NATS_BEHIND) or (
        b.nat == "symmetric" and a.nat in NATS_BEHIND
    )


def path_loss(a: Access, b: Access) -> float:
    return 1.0 - (1.0 - a.loss) * (1.0 - b.loss)


def mathis_bytes_per_s(packet_bytes: int, rtt_s: float, loss: float) -> float:
    """Throughput of loss-based congestion control on a path (inf without loss)."""
    if loss <= 0 or rtt_s <= 0:
        return math.inf
    return 1.22 * packet_bytes / (rtt_s * math.sqrt(loss))


@dataclass(slots=True)
class Link:
    """One direction of one data channel at its sender."""

    delay_s: float
    jitter_s: float
    keep: float
    """Chance that one packet crosses the path: 1 - path loss."""
    rtt_s: float
    rate_bytes_per_s: float
    buffer: deque[bytes] = field(default_factory=deque)
    buffered_bytes: int = 0
    blocked: bool = False
    """Reached the high-water mark and not yet drained to the low one."""
    next_free_s: float = 0.0
    """When the congestion window lets this link send its next message."""
    clear_s: float = 0.0
    """When the link's last message arrives: nothing sent after it arrives sooner."""

    def takes_more(self) -> bool:
        """Below the high-water mark (or drained to the low one since)."""
        return not self.blocked


class QueuedNetwork(SimNetwork):
    """SimNetwork with per-node access links, transport buffers and queued uplinks."""

    def __init__(
        self,
        *,
        rng: random.Random,
        access: dict[str, Access],
        transport: Transport | None = None,
        turn_delay_s: float | None = None,
        default_access: Access | None = None,
        vanish_detect_s: float = 5.0,
        tracker_sample: int = 12,
        observer: Observer | None = None,
        tap: Tap | None = None,
    ) -> None:
        super().__init__(
            rng=rng,
            vanish_detect_s=vanish_detect_s,
            tracker_sample=tracker_sample,
            observer=observer,
            tap=tap,
        )
        self.access = access
        self.transport = transport or Transport()
        self.turn_delay_s = turn_delay_s
        """The TURN server's site's one-way delay (None: no TURN, every pair talks directly)."""
        self.default_access = default_access or Access()
        self._out: dict[str, dict[str, Link]] = {}
        """Per sender, its links' state by receiver."""
        self._uplink_until: dict[str, float] = {}
        """Per node: when its uplink has sent everything queued in it so far."""
        self._wake_at: dict[str, float] = {}
        self._turn: dict[str, int] = {}
        self._unacked: dict[tuple[str, str], tuple[int, float]] = {}
        """Per (receiver, sender): user bytes since the receiver's last SACK, and its time."""
        self.retransmissions = 0
        self.sacks = 0
        self._gates: dict[str, UplinkGate] = {}
        self._handed: dict[str, int] = {}
        """Per node: bytes ever handed to its links' buffers (data and control: the gate's
        measure of what the transport drained)."""
        self._into_uplink: dict[str, int] = {}
        """Per node: bytes ever moved into its uplink (what it has delivered, less its queue)."""
        self.queue.at(UPLINK_SAMPLE_S, self._sample_uplinks)

    def _sample_uplinks(self) -> None:
        """What each node's uplink delivered so far, as the driver tells its core."""
        now = self.now
        for peer_id, node in self.nodes.items():
            if not node.alive:
                continue
            queued_s = max(0.0, self._uplink_until.get(peer_id, now) - now)
            overhead = 1 + self.transport.wire_overhead
            queued = int(queued_s * node.upload_bytes_per_s / overhead)
            delivered = max(0, self._into_uplink.get(peer_id, 0) - queued)
            buffered = sum(link.buffered_bytes for link in self._out.get(peer_id, {}).values())
            node.core.uplink_delivered(delivered, buffered + queued, now)
            self.pump(node)
        self.queue.at(now + UPLINK_SAMPLE_S, self._sample_uplinks)

    def _gate(self, peer_id: str) -> UplinkGate | None:
        if not self.transport.uplink_gate:
            return None
        gate = self._gates.get(peer_id)
        if gate is None:
            gate = self._gates[peer_id] = UplinkGate()
        return gate

    def _access(self, peer_id: str) -> Access:
        return self.access.get(peer_id, self.default_access)

    def link(self, src: str, dst: str) -> Link:
        """The sender-side state of src -> dst (made on first use)."""
        out = self._out.setdefault(src, {})
        found = out.get(dst)
        if found is not None:
            return found
        a, b = self._access(src), self._access(dst)
        delay_s = path_delay_s(a, b, self.turn_delay_s)
        loss = path_loss(a, b)
        rtt_s = 2 * delay_s
        t = self.transport
        rate = mathis_bytes_per_s(t.packet_bytes, rtt_s, loss) if t.loss_throughput else math.inf
        made = Link(
            delay_s=delay_s,
            jitter_s=math.hypot(a.jitter_s, b.jitter_s),
            keep=1.0 - loss,
            rtt_s=rtt_s,
            rate_bytes_per_s=rate / (1 + t.wire_overhead),
        )
        out[dst] = made
        return made

    def link_setup_s(self, a: str, b: str) -> float:
        rtt_s = 2 * path_delay_s(self._access(a), self._access(b), self.turn_delay_s)
        return self.transport.setup_base_s + self.transport.setup_rtts * rtt_s

    # ---------------------------------------------------------------- membership

    def connect(self, a: str, b: str) -> None:
        self.queue.at(self.now + self.link_setup_s(a, b), self._open_link, a, b)

    def _close_link(self, at: str, gone: str) -> None:
        self._out.get(at, {}).pop(gone, None)
        super()._close_link(at, gone)

    def leave(self, peer_id: str, silently: bool) -> None:
        """What a leaving node had buffered is dropped; a bye still goes out through its uplink."""
        out = self._out.get(peer_id, {})
        for link in out.values():
            link.buffer.clear()
            link.buffered_bytes = 0
        super().leave(peer_id, silently)
        if silently:
            out.clear()

    # ---------------------------------------------------------------- messages

    def _transmit(self, src: SimNode, dst_id: str, data: bytes, extra_s: float = 0.0) -> None:
        """Control messages and byes: into the link's buffer, behind what it holds."""
        link = self.link(src.peer_id, dst_id)
        link.buffer.append(data)
        link.buffered_bytes += len(data)
        self._handed[src.peer_id] = self._handed.get(src.peer_id, 0) + len(data)
        self._drain(src)

    def _deliver(self, src: str, dst: str, data: bytes) -> None:
        self._acknowledge(dst, src, len(data))
        super()._deliver(src, dst, data)

    def _acknowledge(self, receiver: str, sender: str, size: int) -> None:
        """A SACK on the receiver's uplink, when its rule says one goes now."""
        t = self.transport
        if t.sack_bytes <= 0:
            return
        key = (receiver, sender)
        unacked, last_s = self._unacked.get(key, (0, -math.inf))
        unacked += size
        if unacked < 2 * t.packet_bytes and self.now - last_s < t.sack_delay_s:
            self._unacked[key] = (unacked, last_s)
            return
        self._unacked[key] = (0, self.now)
        node = self.nodes.get(receiver)
        if node is None or not node.alive:
            return
        self.sacks += 1
        wire_s = (t.sack_bytes * (1 + t.wire_overhead)) / node.upload_bytes_per_s
        self._uplink_until[receiver] = max(self._uplink_until.get(receiver, 0.0), self.now) + wire_s

    def _start_uplink(self, node: SimNode) -> None:
        """Pull data for every link the core serves while its buffer is below the high mark."""
        if not node.links:
            return
        high = self.transport.buffer_high_bytes
        gate = self._gate(node.peer_id)
        buffered = sum(link.buffered_bytes for link in self._out.get(node.peer_id, {}).values())
        if gate is not None:
            gate.observe(self.now, buffered, self._handed.get(node.peer_id, 0))
        held_back = False

        def into_buffer(peer_id: str, data: bytes) -> bool:
            nonlocal buffered
            link = self.link(node.peer_id, peer_id)
            data = self._corrupt(node, data) if node.liar else data
            link.buffer.append(data)
            link.buffered_bytes += len(data)
            buffered += len(data)
            self._handed[node.peer_id] = self._handed.get(node.peer_id, 0) + len(data)
            if link.buffered_bytes >= high:
                link.blocked = True
                node.core.set_link_full(peer_id, True)
            return True

        def takes_more(link: Link) -> Callable[[], bool]:
            def may_send() -> bool:
                nonlocal held_back
                if not link.takes_more():
                    return False
                if gate is not None and link.buffered_bytes > 0 and not gate.has_room(buffered):
                    held_back = True
                    return False
                return True

            return may_send

        # A link that fills hands its slot on (set_link_full): go round for the new holders.
        pumped: set[str] = set()
        while fresh := [
            pid for pid in node.core.upload_peers() if pid in node.links and pid not in pumped
        ]:
            for pid in fresh:
                pumped.add(pid)
                link = self.link(node.peer_id, pid)
                send_data(node.core, pid, self.now, into_buffer, takes_more(link))
        if held_back:
            self._wake_later(node.peer_id, self.now + GATE_POLL_S)
        # Serving may have queued absents (requests we can no longer complete).
        send_ready_control(node.core, node.core.take_ready(), self._sender(node))
        self._drain(node)

    def _drain(self, node: SimNode) -> None:
        """Move messages from the links' buffers into the uplink while its queue has room."""
        peer_id = node.peer_id
        out = self._out.get(peer_id)
        if not out:
            return
        now = self.now
        rate = node.upload_bytes_per_s
        queue_s = self._access(peer_id).queue_s
        overhead = 1 + self.transport.wire_overhead
        packet_bytes = self.transport.packet_bytes
        header_bytes = self.transport.packet_header_bytes
        low = self.transport.buffer_low_bytes
        # (EPS_S: a wake-up set for `until - queue_s` must find the room it was set for.)
        room_s = queue_s + EPS_S
        until = max(self._uplink_until.get(peer_id, 0.0), now)
        if until - now >= room_s:
            if any(link.buffer for link in out.values()):
                self._wake_later(peer_id, until - queue_s)
            return
        links: list[tuple[str, Link]] = []
        for pid in sorted(out):  # sorted: runs must not depend on hash order
            link = out[pid]
            if link.buffer:
                links.append((pid, link))
            elif pid not in node.links:
                del out[pid]  # closed by us (a drop): its bye has left
        unblocked = False
        turn = self._turn.get(peer_id, 0)
        while links and until - now < room_s:
            start = turn % len(links)
            pick = -1
            for i in range(len(links)):
                j = (start + i) % len(links)
                if links[j][1].next_free_s <= now + EPS_S:
                    pick = j
                    break
            if pick < 0:
                break
            pid, link = links[pick]
            turn = pick + 1
            data = link.buffer.popleft()
            size = len(data)
            self._into_uplink[peer_id] = self._into_uplink.get(peer_id, 0) + size
            link.buffered_bytes -= size
            if link.blocked and link.buffered_bytes <= low:
                link.blocked = False
                unblocked = True
                if node.alive:
                    node.core.set_link_full(pid, False)
            packets = -(-size // packet_bytes)
            until += (size + packets * header_bytes) * overhead / rate
            if link.rate_bytes_per_s != math.inf:
                link.next_free_s = max(now, link.next_free_s) + size / link.rate_bytes_per_s
            self._send_on_wire(peer_id, pid, link, data, until)
            if not link.buffer:
                links.pop(pick)
        self._turn[peer_id] = turn
        self._uplink_until[peer_id] = until
        if unblocked:
            self._wake_later(peer_id, now)
        elif links:
            wake = until - queue_s if until - now >= room_s else math.inf
            self._wake_later(peer_id, min(wake, min(link.next_free_s for _pid, link in links)))

    def _wake_later(self, peer_id: str, when: float) -> None:
        if self._wake_at.get(peer_id, math.inf) > when:
            self._wake_at[peer_id] = when
            self.queue.at(when, self._wake, peer_id, when)

    def _wake(self, peer_id: str, when: float) -> None:
        if self._wake_at.get(peer_id) != when:
            return
        del self._wake_at[peer_id]
        node = self.nodes[peer_id]
        if node.alive:
            self.pump(node)
        else:
            self._drain(node)

    def _send_on_wire(self, src: str, dst: str, link: Link, data: bytes, sent_s: float) -> None:
        """The message's last byte leaves the uplink at sent_s: when does it arrive?"""
        self.messages_sent += 1
        arrive = sent_s + link.delay_s
        if link.jitter_s:
            arrive += max(-link.delay_s, self.rng.gauss(0.0, link.jitter_s))
        if link.keep < 1.0:
            packets = -(-len(data) // self.transport.packet_bytes)
            if self.rng.random() >= link.keep**packets:
                self.retransmissions += 1
                arrive += link.rtt_s if link.buffer else max(self.transport.rto_s, link.rtt_s)
        if not (self.transport.unordered_channel and travels_unordered(data)):
            arrive = max(arrive, link.clear_s)
            link.clear_s = arrive
        if self.tap is not None:
            self.tap(src, dst, data, self.now, arrive)
        self.queue.at(arrive, self._deliver, src, dst, data)
