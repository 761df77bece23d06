"""A discrete-event network that drives many swarm cores in virtual time.

Model (deliberately simple, so results are easy to reason about):
- each peer has one uplink of `upload_bytes_per_s`; data messages (headers, pieces) are pulled
  from the core one at a time, round-robin over its neighbours, only when the uplink is free - the
  same flow control a real driver applies with a data channel's bufferedAmount;
- control messages are tiny and go out at once;
- every link adds `latency_s`; a link is reliable and ordered like a data channel, so 'loss' is a
  retransmission: with probability `loss_rate` a message arrives `retransmit_s` later, and the
  messages behind it wait (head-of-line blocking);
- downloads are not capacity-limited; peers may leave with a bye or vanish silently (their
  neighbours notice only after `vanish_detect_s`, as ICE consent checks would).
Rules: no wall clock, no threads; all randomness from one seeded random.Random.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamer.protocol import MsgType
from streamer.swarm import DropNeighbour, Event, PeerSignal, SwarmPeer, WantNeighbours
from streamer.swarm.drain import Send, send_data, send_ready_control

Observer = Callable[[str, Event, float], None]
"""Sees every event a core hands to the network: (peer id, event, virtual now)."""
Tap = Callable[[str, str, bytes, float, float], None]
"""Sees every message sent: (from, to, the message, sent at, arrives at)."""


@dataclass(slots=True)
class SimNode:
    peer_id: str
    core: SwarmPeer
    upload_bytes_per_s: float
    liar: str | None = None
    """None, 'piece' (corrupts every piece it sends) or 'header' (breaks header signatures)."""
    alive: bool = True
    busy: bool = False
    turn: int = 0
    timer_at: float | None = None
    links: set[str] = field(default_factory=set)


class EventQueue:
    """A heap of (time, order, callback): ties run in the order they were scheduled."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self.now = 0.0
        self.processed = 0

    def at(self, when: float, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (max(when, self.now), next(self._order), fn, args))

    def run_until(
        self,
        end_s: float,
        on_progress: Callable[[float], None] | None = None,
        every_events: int = 10_000,
    ) -> None:
        """Run every event due by end_s; on_progress(virtual now) every every_events events."""
        while self._heap and self._heap[0][0] <= end_s:
            when, _order, fn, args = heapq.heappop(self._heap)
            self.now = when
            self.processed += 1
            fn(*args)
            if on_progress is not None and self.processed % every_events == 0:
                on_progress(when)
        self.now = end_s


OFFER = '{"type": "offer"}'
ANSWER = '{"type": "answer"}'
"""What the simulator's relayed signals carry (the real drivers send SDP; its size does not matter
here: a signal is a control message)."""
OFFER_RETRY_S = 5.0
"""An offer not answered by then may go again (the target was full, or the relay left)."""


class SimNetwork:
    """Peers, links and the tracker of a simulated swarm."""

    def __init__(
        self,
        *,
        rng: random.Random,
        latency_s: float = 0.03,
        loss_rate: float = 0.0,
        retransmit_s: float = 0.2,
        connect_delay_s: float = 0.3,
        vanish_detect_s: float = 5.0,
        tracker_sample: int = 12,
        tracker_down: tuple[float, float] | None = None,
        observer: Observer | None = None,
        tap: Tap | None = None,
    ) -> None:
        self.rng = rng
        self.queue = EventQueue()
        self.latency_s = latency_s
        self.loss_rate = loss_rate
        self.retransmit_s = retransmit_s
        self.connect_delay_s = connect_delay_s
        self.vanish_detect_s = vanish_detect_s
        self.tracker_sample = tracker_sample
        self.tracker_down = tracker_down
        """[start, end) in which no signaling server answers: a node that wants neighbours
        then opens links through peer exchange only (an offer and an answer relayed by a
        common neighbour's core, as the drivers do)."""
        self.links_via_exchange: dict[str, int] = {}
        """peer id -> links it opened through peer exchange."""
        self._offers: dict[tuple[str, str], float] = {}
        """(offerer, target) -> when the offer went (one at a time per pair, for a while)."""
        self.observer = observer
        self.tap = tap
        self.nodes: dict[str, SimNode] = {}
        self._alive: list[str] = []
        self._alive_at: dict[str, int] = {}
        """peer id -> its index in _alive (swap-remove keeps the tracker O(1) per peer)."""
        self._link_clear_s: dict[tuple[str, str], float] = {}
        self.messages_sent = 0
        self.drops: list[tuple[float, str, str, str]] = []
        """(time, by, dropped, reason) for every DropNeighbour event."""

    @property
    def now(self) -> float:
        return self.queue.now

    # ---------------------------------------------------------------- membership

    def add_node(self, node: SimNode) -> None:
        self.nodes[node.peer_id] = node
        self._alive_at[node.peer_id] = len(self._alive)
        self._alive.append(node.peer_id)
        self.pump(node)

    def connect(self, a: str, b: str) -> None:
        """Open a link a<->b after the connection setup delay, if both still have room."""
        self.queue.at(self.now + self.connect_delay_s, self._open_link, a, b)

    def _open_link(self, a: str, b: str) -> None:
        na, nb = self.nodes.get(a), self.nodes.get(b)
        if na is None or nb is None or not (na.alive and nb.alive) or b in na.links:
            return
        if not (na.core.has_room() and nb.core.has_room()):
            return
        if a in nb.core.banned or b in na.core.banned:
            return
        na.core.add_neighbour(b, self.now)
        nb.core.add_neighbour(a, self.now)
        na.links.add(b)
        nb.links.add(a)
        self.pump(na)
        self.pump(nb)

    def leave(self, peer_id: str, silently: bool) -> None:
        """A peer goes away: with a bye to every neighbour, or vanishing without a word."""
        node = self.nodes[peer_id]
        if not node.alive:
            return
        if not silently:
            bye = node.core.leave()
            for other in sorted(node.links):  # sorted: runs must not depend on hash order
                self._transmit(node, other, bye)
        node.alive = False
        index = self._alive_at.pop(peer_id)
        last = self._alive.pop()
        if last != peer_id:
            self._alive[index] = last
            self._alive_at[last] = index
        for other in sorted(node.links):
            delay = self.vanish_detect_s if silently else self.latency_s
            self.queue.at(self.now + delay, self._close_link, other, peer_id)
        node.links.clear()

    def _close_link(self, at: str, gone: str) -> None:
        node = self.nodes.get(at)
        if node is None or not node.alive:
            return
        node.links.discard(gone)
        node.core.remove_neighbour(gone, self.now)
        self.pump(node)

    def _tracker_candidates(self, node: SimNode, count: int) -> list[str]:
        size = min(len(self._alive), self.tracker_sample + 1 + len(node.links))
        sample = self.rng.sample(self._alive, size)
        others = [pid for pid in sample if pid != node.peer_id and pid not in node.links]
        return [pid for pid in others if self.nodes[pid].core.has_room()][:count]

    # ---------------------------------------------------------------- peer exchange

    def tracker_answers(self) -> bool:
        down = self.tracker_down
        return down is None or not down[0] <= self.now < down[1]

    def _offer_via_exchange(self, node: SimNode, count: int) -> None:
        """Send an offer through a common neighbour to peers our neighbours named."""
        for pid, via in node.core.exchange_candidates(count, self.now):
            sent_s = self._offers.get((node.peer_id, pid))
            if pid in node.links or (sent_s is not None and self.now - sent_s < OFFER_RETRY_S):
                continue
            if node.core.send_signal(via, pid, OFFER):
                self._offers[(node.peer_id, pid)] = self.now

    def _on_peer_signal(self, node: SimNode, event: PeerSignal) -> None:
        """An offer is answered through the same neighbour if we have room; an answer to our
        offer opens the link (after the setup delay, like any other)."""
        other = event.from_peer
        if event.payload == OFFER:
            if node.core.has_room() and other not in node.links:
                node.core.send_signal(event.via, other, ANSWER)
        elif event.payload == ANSWER and self._offers.pop((node.peer_id, other), None) is not None:
            self.links_via_exchange[node.peer_id] = self.links_via_exchange.get(node.peer_id, 0) + 1
            self.connect(node.peer_id, other)

    # ---------------------------------------------------------------- messages

    def _transmit(self, src: SimNode, dst_id: str, data: bytes, extra_s: float = 0.0) -> None:
        self.messages_sent += 1
        arrive = self.now + extra_s + self.latency_s
        if self.loss_rate and self.rng.random() < self.loss_rate:
            arrive += self.retransmit_s
        key = (src.peer_id, dst_id)
        arrive = max(arrive, self._link_clear_s.get(key, 0.0))
        self._link_clear_s[key] = arrive
        if self.tap is not None:
            self.tap(src.peer_id, dst_id, data, self.now, arrive)
        self.queue.at(arrive, self._deliver, src.peer_id, dst_id, data)

    def _deliver(self, src: str, dst: str, data: bytes) -> None:
        node = self.nodes.get(dst)
        if node is None or not node.alive or src not in node.links:
            return
        node.core.receive(src, data, self.now)
        self.pump(node)

    def _corrupt(self, node: SimNode, data: bytes) -> bytes:
        if node.liar == "piece" and data[0] == MsgType.PIECE:
            return data[:-1] + bytes([data[-1] ^ 0xFF])
        if node.liar == "header" and data[0] == MsgType.CHUNK_HEADER:
            return data[:-1] + bytes([data[-1] ^ 0x01])
        return data

    # ---------------------------------------------------------------- driving a core

    def pump(self, node: SimNode) -> None:
        """After any input to node's core: events, control messages, uplink, timer."""
        if not node.alive:
            return
        core = node.core
        for event in core.pop_events():
            if self.observer is not None:
                self.observer(node.peer_id, event, self.now)
            if isinstance(event, DropNeighbour):
                self.drops.append((self.now, node.peer_id, event.peer_id, event.reason))
                if event.bye is not None and event.peer_id in node.links:
                    self._transmit(node, event.peer_id, event.bye)
                node.links.discard(event.peer_id)
                self.queue.at(
                    self.now + self.latency_s, self._close_link, event.peer_id, node.peer_id
                )
            elif isinstance(event, WantNeighbours):
                if self.tracker_answers():
                    for pid in self._tracker_candidates(node, event.count):
                        self.connect(node.peer_id, pid)
                else:
                    self._offer_via_exchange(node, event.count)
            elif isinstance(event, PeerSignal):
                self._on_peer_signal(node, event)
        linked = [pid for pid in core.take_ready() if pid in node.links]
        send_ready_control(core, linked, self._sender(node))
        self._start_uplink(node)
        when = core.next_timer()
        if when is not None and (node.timer_at is None or when < node.timer_at):
            node.timer_at = when
            self.queue.at(when, self._timer, node.peer_id, when)

    def _timer(self, peer_id: str, when: float) -> None:
        node = self.nodes[peer_id]
        if not node.alive or node.timer_at != when:
            return
        node.timer_at = None
        node.core.handle_timer(self.now)
        self.pump(node)

    def _sender(self, node: SimNode) -> Send:
        """Control messages and byes from node: onto the wire at once."""

        def send(peer_id: str, data: bytes) -> bool:
            self._transmit(node, peer_id, data)
            return True

        return send

    def _start_uplink(self, node: SimNode) -> None:
        """One message at a time on node's uplink: the first link served gets it."""
        if node.busy or not node.links:
            return

        def occupy_uplink(peer_id: str, data: bytes) -> bool:
            data = self._corrupt(node, data) if node.liar else data
            tx_s = len(data) / node.upload_bytes_per_s
            node.busy = True
            self.queue.at(self.now + tx_s, self._uplink_free, node.peer_id)
            self._transmit(node, peer_id, data, extra_s=tx_s)
            return True

        for pid in node.core.upload_peers():
            if pid in node.links:
                send_data(node.core, pid, self.now, occupy_uplink, lambda: not node.busy)
                if node.busy:
                    return
        # Serving may have queued absents (requests we can no longer complete).
        send_ready_control(node.core, node.core.take_ready(), self._sender(node))

    def _uplink_free(self, peer_id: str) -> None:
        node = self.nodes[peer_id]
        node.busy = False
        if node.alive:
            self.pump(node)
