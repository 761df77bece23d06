"""Telling neighbours what we hold: hello and buffer map on a new link, haves, header pushes.

Rules: a neighbour is owed a have per seq (have_due) and gets at most one have per
have_interval_s carrying every piece held by then; a have that tells a neighbour nothing it lacks
is not sent (except to the source, which learns from it that we are fed by peers); a header goes
ahead of the first have of a chunk to a neighbour that has shown no sign of it (push_headers).
"""

from __future__ import annotations

from streamer.protocol import (
    PROTOCOL_VERSION,
    BufferMap,
    Capability,
    Have,
    Hello,
    Role,
    encode_message,
)
from streamer.protocol.messages import MAX_BUFFER_MAP_BITS
from streamer.swarm.config import SwarmConfig
from streamer.swarm.context import PeerContext
from streamer.swarm.neighbours import Neighbour, UplinkMeter


class Announcer:
    """Hellos, buffer maps and haves of one peer, paced per neighbour."""

    def __init__(
        self,
        ctx: PeerContext,
        *,
        role: Role,
        uplink: UplinkMeter,
    ) -> None:
        self._role = role
        self._config, self._store = ctx.config, ctx.store
        self._nbrs, self._outbox = ctx.nbrs, ctx.outbox
        self._uplink = uplink

    def greet(self, nb: Neighbour, upload: bool) -> None:
        """A new link: our hello, then a buffer map of the complete chunks we hold."""
        self.hello(nb, upload)
        have = self._store.complete_seqs()
        if have:
            base = max(have[0], have[-1] - MAX_BUFFER_MAP_BITS + 1)
            members = set(have)
            bits = tuple(s in members for s in range(base, have[-1] + 1))
            nb.control.append(encode_message(BufferMap(base, bits)))
        self._outbox.wake(nb.peer_id)

    def hello(self, nb: Neighbour, upload: bool) -> None:
        """Our hello: who we are and whether we upload (sent again when that changes)."""
        caps = Capability.PARTIAL | (Capability.UPLOAD if upload else Capability.NONE)
        nb.control.append(encode_message(Hello(PROTOCOL_VERSION, self._role, caps)))
        self._outbox.wake(nb.peer_id)

    def send_have(self, nb: Neighbour, seq: int, bits: tuple[bool, ...]) -> None:
        """A have, preceded by the chunk's signed header when nb has shown no sign of it.

        Pushing the header (a few hundred bytes) with the first have saves nb a request round
        trip through our upload queue before it can ask anyone for pieces: on every hop.
        """
        chunk = self._store.get(seq)
        if (
            self._config.push_headers
            and chunk is not None
            and seq not in nb.headers_sent
            and nb.known_mask(seq) == 0
        ):
            nb.headers_sent.add(seq)
            self._outbox.send(nb, chunk.header.encode())
        self._outbox.send(nb, encode_message(Have(seq, bits)))

    def announce(self, seq: int, skip: str | None, now: float) -> None:
        """Owe every neighbour (but skip) a have of seq; see flush for when it goes."""
        for nb in self._nbrs.values():
            if nb.peer_id != skip and (seq not in nb.complete or nb.is_source):
                nb.have_due.add(seq)
                if now >= nb.have_next_s:
                    self.flush(nb, now)

    def flush_due(self, now: float) -> None:
        """The timer: send the haves whose interval has passed."""
        for nb in self._nbrs.values():
            if nb.have_due and now >= nb.have_next_s:
                self.flush(nb, now)

    def next_due_s(self) -> float | None:
        """When the next owed have may go (None: none is owed)."""
        due = [nb.have_next_s for nb in self._nbrs.values() if nb.have_due]
        return min(due) if due else None

    def flush(self, nb: Neighbour, now: float) -> None:
        """Send nb one have per owed seq, carrying every piece we hold now, at most once per
        have_interval_s: a have per verified piece per neighbour dominated the traffic, and one
        have a little later carries all the pieces that arrived meanwhile. A have that tells nb
        nothing it lacks (its own haves show it holds all our pieces) is not sent."""
        sent = False
        for seq in sorted(nb.have_due):
            chunk = self._store.get(seq)
            if chunk is None:
                continue
            theirs = nb.known_mask(seq)
            if chunk.complete:
                # The source hears of every chunk we complete (it holds them all): that tells it
                # we are fed by peers (see source_seed_proof_s).
                if theirs == -1 and not nb.is_source:
                    continue
                bits = header_bits(len(chunk.pieces))
            elif theirs == -1:
                continue
            else:
                mine = chunk.held_mask
                if mine and mine & ~theirs == 0:
                    continue
                bits = chunk.bits()
            self.send_have(nb, seq, bits)
            sent = True
        nb.have_due.clear()
        if sent:
            nb.have_next_s = now + self.have_interval_s()

    def have_interval_s(self) -> float:
        """How often at most a have goes to one neighbour: have_interval_s, or longer on an
        uplink measured narrow (see have_uplink_share). Never for the source: its haves are
        the first news of every chunk."""
        if self._role == Role.SOURCE:
            return self._config.have_interval_s
        return have_interval_for(self._config, len(self._nbrs), self._uplink.capacity_bytes_per_s)


def have_interval_for(
    config: SwarmConfig, neighbours: int, uplink_bytes_per_s: float | None
) -> float:
    """How often at most a have goes to one neighbour, so that haves to all of them take at
    most have_uplink_share of the uplink (unknown: have_interval_s)."""
    if not uplink_bytes_per_s:
        return config.have_interval_s
    share_bytes_per_s = config.have_uplink_share * uplink_bytes_per_s
    needed_s = neighbours * config.have_wire_bytes / share_bytes_per_s
    return min(config.max_have_interval_s, max(config.have_interval_s, needed_s))


def header_bits(piece_count: int) -> tuple[bool, ...]:
    """A have's bits for a whole chunk."""
    return (True,) * piece_count


def bits_mask(bits: tuple[bool, ...]) -> int:
    """A have's bitfield as an int: bit i set = piece i held."""
    mask = 0
    for i, held in enumerate(bits):
        if held:
            mask |= 1 << i
    return mask
