"""Peer exchange: hints about neighbours' neighbours, and WebRTC signals relayed through them.

Why: with every signaling server down, a peer that loses neighbours can still find new ones. Each
neighbour tells us, every `exchange_interval_s`, which uploading peers it is linked to (`peers`,
a hint list nobody signed: kept per neighbour, bounded, expiring, and only ever used as ids to
try); we can then send a WebRTC offer to one of them through the neighbour that named it
(`signal`), and the answer comes back the same way. The driver decides whether a new neighbour
comes from the server or from here (`SwarmPeer.exchange_candidates`); the core never opens links.

Rules: a hint is never ourselves, a current neighbour or a banned peer, nor the source (its
uplink is for first copies, not for everyone who heard of it); the ids a neighbour is told are
sorted and rotated, never drawn at random (both cores give the same bytes); a relayed signal
carries the id of the neighbour it came from, whatever that neighbour wrote (nobody can speak
for someone else), and goes only to a current neighbour; signals beyond
`exchange_max_signals_per_s` from one neighbour, or to nobody we know, are dropped and counted.
"""

from __future__ import annotations

from streamer.protocol import PEER_ID_PATTERN, Peers, Signal, encode_message
from streamer.swarm.context import PeerContext
from streamer.swarm.events import PeerSignal
from streamer.swarm.neighbours import Neighbour

_SIGNAL_WINDOW_S = 1.0


class Exchange:
    """Sends `peers` hints, keeps the ones received, relays and receives `signal` messages."""

    def __init__(self, ctx: PeerContext, *, own_id: str, banned: set[str]) -> None:
        self._config = ctx.config
        self._nbrs = ctx.nbrs
        self._outbox = ctx.outbox
        self._own_id = own_id
        self._banned = banned
        self._due_s: dict[str, float] = {}
        """When each neighbour gets its next peers message."""
        self._sent: dict[str, int] = {}
        """Peers messages sent to each neighbour so far (the rotation of a long list)."""
        self._hints: dict[str, tuple[float, tuple[str, ...]]] = {}
        """Per neighbour: when its last peers message came, and the ids it named."""
        self._signal_window: dict[str, tuple[float, int]] = {}
        """Per neighbour: start of the current one-second window and signals taken in it."""
        self.signals_relayed = 0
        self.signals_dropped = 0

    # ------------------------------------------------------------------ links

    def greet(self, nb: Neighbour, now: float) -> None:
        """A link opened: its first peers message goes soon (after hellos have crossed)."""
        if self._config.exchange_interval_s > 0:
            self._due_s[nb.peer_id] = now + self._config.exchange_first_s

    def forget(self, peer_id: str) -> None:
        self._due_s.pop(peer_id, None)
        self._sent.pop(peer_id, None)
        self._hints.pop(peer_id, None)
        self._signal_window.pop(peer_id, None)

    # ------------------------------------------------------------------ hints out

    def next_due_s(self) -> float | None:
        return min(self._due_s.values()) if self._due_s else None

    def flush_due(self, now: float) -> None:
        """Send the peers messages that are due (neighbours in link order)."""
        for peer_id, due_s in list(self._due_s.items()):
            if due_s > now:
                continue
            self._due_s[peer_id] = now + self._config.exchange_interval_s
            nb = self._nbrs.get(peer_id)
            if nb is None:
                continue
            listed = self._listed_for(peer_id)
            if listed:
                self._outbox.send(nb, encode_message(Peers(listed)))

    def _listed_for(self, peer_id: str) -> tuple[str, ...]:
        """Up to exchange_max_peers uploading neighbours other than peer_id and the source,
        sorted, the window rotating by that many with each message to peer_id."""
        ids = sorted(
            nb.peer_id
            for nb in self._nbrs.values()
            if nb.peer_id != peer_id
            and nb.hello_received
            and nb.uploads
            and not nb.is_source
            and PEER_ID_PATTERN.match(nb.peer_id)
        )
        limit = self._config.exchange_max_peers
        if len(ids) <= limit:
            return tuple(ids)
        sent = self._sent.get(peer_id, 0)
        self._sent[peer_id] = sent + 1
        start = (sent * limit) % len(ids)
        return tuple((ids + ids)[start : start + limit])

    # ------------------------------------------------------------------ hints in

    def on_peers(self, nb: Neighbour, msg: Peers, now: float) -> None:
        """Keep nb's hints (replacing its last ones): never ourselves or nb."""
        ids = [p for p in msg.peer_ids if p != self._own_id and p != nb.peer_id]
        self._hints[nb.peer_id] = (now, tuple(dict.fromkeys(ids)))

    def candidates(self, count: int, now: float) -> list[tuple[str, str]]:
        """Up to count (peer id, neighbour to relay through): ids named by more neighbours
        first, then by id; the relay is the first of those neighbours by id."""
        vias: dict[str, list[str]] = {}
        ttl_s = self._config.exchange_hint_ttl_s
        for via, (received_s, ids) in self._hints.items():
            if now - received_s > ttl_s or via not in self._nbrs:
                continue
            for peer_id in ids:
                if peer_id in self._nbrs or peer_id in self._banned or peer_id == self._own_id:
                    continue
                vias.setdefault(peer_id, []).append(via)
        ranked = sorted(vias, key=lambda p: (-len(vias[p]), p))
        return [(p, min(vias[p])) for p in ranked[: max(0, count)]]

    def hinted_count(self, now: float) -> int:
        """Distinct peers we could try now (for stats)."""
        return len(self.candidates(self._config.max_neighbours * 16, now))

    # ------------------------------------------------------------------ signals

    def send_signal(self, via: str, to: str, payload: str) -> bool:
        """Queue a signal for `to` on the link to `via`; False if that cannot be sent (no such
        neighbour, an id outside the pattern, our own id unknown, a payload too long)."""
        nb = self._nbrs.get(via)
        if nb is None or not PEER_ID_PATTERN.match(to) or not PEER_ID_PATTERN.match(self._own_id):
            return False
        try:
            data = encode_message(Signal(to=to, from_peer=self._own_id, payload=payload))
        except ValueError:
            return False
        self._outbox.send(nb, data)
        return True

    def on_signal(self, nb: Neighbour, msg: Signal, now: float) -> None:
        """For us: an event. For another neighbour: forwarded, from rewritten to nb. Else
        dropped (and beyond the rate limit)."""
        if not self._within_rate(nb.peer_id, now):
            self.signals_dropped += 1
            return
        if msg.to == self._own_id:
            self._outbox.emit(PeerSignal(msg.from_peer, nb.peer_id, msg.payload))
            return
        target = self._nbrs.get(msg.to)
        if target is None or target is nb:
            self.signals_dropped += 1
            return
        relayed = Signal(to=msg.to, from_peer=nb.peer_id, payload=msg.payload)
        self._outbox.send(target, encode_message(relayed))
        self.signals_relayed += 1

    def _within_rate(self, peer_id: str, now: float) -> bool:
        start_s, taken = self._signal_window.get(peer_id, (now, 0))
        if now - start_s >= _SIGNAL_WINDOW_S:
            start_s, taken = now, 0
        taken += 1
        self._signal_window[peer_id] = (start_s, taken)
        return taken <= self._config.exchange_max_signals_per_s
