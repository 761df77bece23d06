"""SwarmPeer: one peer's sans-I/O swarm state machine (source, relay or viewer).

The peer is a dispatcher: it owns the neighbour table, decodes each message and hands it to the
module whose job it is (announcing, fetching, serving, seeding, playout), and runs what follows
every input. Rules this module never breaks: no asyncio, no sockets, no `time` - every entry point
takes `now` (seconds, on one monotonic-or-Unix clock chosen by the driver); randomness comes from
an injected seeded generator (Mulberry32, the JS core's too); a malformed or hostile message
drops only its sender; nothing unverified is stored, played or forwarded. See
streamer/swarm/__init__.py for the driver's API in one page.
"""

from __future__ import annotations

import math
from typing import Any

from streamer.protocol import (
    PROTOCOL_VERSION,
    Absent,
    BufferMap,
    Bye,
    ByeReason,
    Cancel,
    Capability,
    ChunkHeader,
    Have,
    Hello,
    Message,
    Peers,
    Piece,
    ProtocolError,
    Request,
    Role,
    Signal,
    Unknown,
    decode_message,
    encode_message,
    split_pieces,
)
from streamer.swarm.announcing import Announcer, bits_mask
from streamer.swarm.chunks import ChunkStore, HeaderVerifier, PiecePool, PieceResult
from streamer.swarm.config import SwarmConfig
from streamer.swarm.context import PeerContext
from streamer.swarm.events import ChunkComplete, DropNeighbour, Event, WantNeighbours
from streamer.swarm.exchange import Exchange
from streamer.swarm.fetching import Fetcher
from streamer.swarm.neighbours import DeliveredUplinkMeter, Neighbour, UplinkMeter
from streamer.swarm.outbox import Outbox
from streamer.swarm.playback import Playback
from streamer.swarm.playout import Playout
from streamer.swarm.scheduler import Mulberry32, RandomSource
from streamer.swarm.seeding import Seeder
from streamer.swarm.serving import Server


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class SwarmPeer:
    """One peer of a channel. The source publishes chunks; relays and viewers pull and forward."""

    def __init__(
        self,
        *,
        role: Role,
        now: float,
        config: SwarmConfig | None = None,
        verifier: HeaderVerifier | None = None,
        rng: RandomSource | None = None,
        upload: bool = True,
        piece_pool: PiecePool | None = None,
        peer_id: str = "",
    ) -> None:
        if role != Role.SOURCE and verifier is None:
            raise ValueError("a relay or viewer needs the source's public key (a HeaderVerifier)")
        self.role = role
        self._config = config = config or SwarmConfig()
        self.upload = upload or role == Role.SOURCE
        self.store = ChunkStore(verifier, piece_pool)
        """piece_pool: a simulator's shared store of verified payloads (memory, not behaviour)."""
        self._nbrs: dict[str, Neighbour] = {}
        self._now = now
        self._joined_s = now
        self._first_link_s: float | None = None
        """When the first link opened (startup_phases)."""
        self._next_want_s: float | None = None if role == Role.SOURCE else now
        self._uplink = UplinkMeter()
        self.outbox = Outbox()
        self.outbox.on_drop(self._drop)
        ctx = PeerContext(config, self.store, self._nbrs, self.outbox)
        self.announcer = Announcer(ctx, role=role, uplink=self._uplink)
        self.seeder = Seeder(ctx, announcer=self.announcer) if role == Role.SOURCE else None
        self.serving = Server(ctx, upload=self.upload, seeder=self.seeder)
        self.playout = Playout(ctx, plays=role != Role.SOURCE, now=now, abandon=self._abandon)
        self.fetching = Fetcher(ctx, playout=self.playout, rng=rng or Mulberry32(0))
        self.bytes_uploaded = 0
        self._delivered = DeliveredUplinkMeter()
        """What our uplink delivers under demand (see upload_min_uplink_share)."""
        self.upload_stopped_s: float | None = None
        """When we stopped uploading for a narrow uplink."""
        self.stream_bytes = 0
        self.drops: dict[str, int] = {}
        self.banned: set[str] = set()
        """Peers that sent forged or malformed data: never accepted as neighbours again."""
        self.exchange = Exchange(ctx, own_id=peer_id, banned=self.banned)
        """peer_id: ours, as neighbours know it (signals addressed to it are ours)."""

    @property
    def config(self) -> SwarmConfig:
        """Fixed at construction: every module of the peer holds it."""
        return self._config

    @property
    def playback(self) -> Playback | None:
        return self.playout.playback

    # ---------------------------------------------------------------- neighbours

    @property
    def neighbour_ids(self) -> list[str]:
        return list(self._nbrs)

    def neighbour(self, peer_id: str) -> Neighbour | None:
        return self._nbrs.get(peer_id)

    def has_room(self) -> bool:
        return len(self._nbrs) < self.config.max_neighbours

    def add_neighbour(self, peer_id: str, now: float) -> bool:
        """A link to peer_id is open. False (and nothing changes) when we are full."""
        if peer_id in self._nbrs:
            return True
        if not self.has_room() or peer_id in self.banned:
            return False
        self._now = now
        nb = Neighbour(peer_id=peer_id, connected_s=now, last_useful_s=now)
        self._nbrs[peer_id] = nb
        if self._first_link_s is None:
            self._first_link_s = now
        self.announcer.greet(nb, self.upload)
        self.exchange.greet(nb, now)
        return True

    def remove_neighbour(self, peer_id: str, now: float) -> None:
        """The link to peer_id closed (or the driver gave up on it). Its requests go elsewhere."""
        self._now = now
        nb = self._nbrs.pop(peer_id, None)
        if nb is None:
            return
        self.fetching.forget(nb)
        self.serving.forget(nb)
        self.exchange.forget(peer_id)
        self.outbox.ready.discard(peer_id)
        self._after(now)

    def leave(self) -> bytes:
        """The bye to send to every neighbour when this peer shuts down."""
        return encode_message(Bye(ByeReason.SHUTDOWN, "leaving"))

    # ---------------------------------------------------------------- input

    def receive(self, peer_id: str, data: bytes, now: float) -> None:
        """One message from peer_id. A malformed one drops peer_id (see pop_events)."""
        self._now = now
        nb = self._nbrs.get(peer_id)
        if nb is None:
            return
        try:
            msg = decode_message(data)
            self._handle(nb, msg, len(data), now)
        except ProtocolError as exc:
            self._drop(nb, f"protocol error: {exc}", ByeReason.PROTOCOL_ERROR)
        self._after(now)

    def publish_chunk(self, header: ChunkHeader, data: bytes, now: float) -> None:
        """Source only: offer a freshly released chunk whose header the driver signed
        (streamer.protocol.ChunkSigner; JS: publishChunk with signChunkHeader's header)."""
        if self.seeder is None:
            raise RuntimeError("only the source publishes chunks")
        self._now = now
        seq = header.seq
        self.store.add_own(header, split_pieces(data, header.piece_size))
        self.stream_bytes += len(data)
        self.seeder.publish(seq, header.piece_count, now)
        floor = seq - self.config.source_keep_chunks + 1
        self.store.evict_below(floor)
        self.seeder.evict_below(floor)
        self.serving.evict_below(floor)
        for nb in self._nbrs.values():
            nb.forget_below(floor)
        self._after(now)

    def source_restarted(self, first_seq: int) -> None:
        """The broadcaster restarted at first_seq (a new session of the same key): the seqs
        between its last session's newest chunk and first_seq never existed."""
        self.playout.source_restarted(first_seq)

    # ---------------------------------------------------------------- peer exchange

    def exchange_candidates(self, count: int, now: float) -> list[tuple[str, str]]:
        """Up to count peers our neighbours named lately, each with the neighbour to send our
        WebRTC offer through (send_signal): for when no signaling server answers."""
        self._now = now
        return self.exchange.candidates(count, now)

    def send_signal(self, via: str, to: str, payload: str) -> bool:
        """Queue a WebRTC offer, answer or ICE candidate (UTF-8 JSON) for `to` on the link to
        neighbour `via`; False if it cannot go. The driver sends ready links as after any input."""
        return self.exchange.send_signal(via, to, payload)

    # ---------------------------------------------------------------- output

    def next_control_message(self, peer_id: str) -> bytes | None:
        """Next small message for peer_id (hello, buffer map, have, request, cancel, absent)."""
        nb = self._nbrs.get(peer_id)
        if nb is None or not nb.control:
            return None
        data = nb.control.popleft()
        self.bytes_uploaded += len(data)
        nb.bytes_sent += len(data)
        return data

    def next_data_message(self, peer_id: str, now: float) -> bytes | None:
        """Next header or piece for peer_id; call it when that link has room to send.

        Only requests holding one of the few upload slots are served (oldest first): serving one
        neighbour at full speed, then the next, spreads a chunk faster than sharing the uplink.
        """
        self._now = now
        out = self.serving.next_data(peer_id)
        if out is not None:
            self.bytes_uploaded += len(out)
            self._nbrs[peer_id].bytes_sent += len(out)
        return out

    def upload_peers(self) -> list[str]:
        """Peer ids whose requests hold an upload slot now: pump next_data_message for these."""
        return self.serving.upload_peers()

    def set_link_full(self, peer_id: str, full: bool) -> None:
        """The link to peer_id takes no more data for now (its transport buffer reached the high
        mark) or does again. While full, its requests hold no upload slot, so the next ones
        are served on links that can take data."""
        nb = self._nbrs.get(peer_id)
        if nb is not None:
            self.serving.set_link_full(nb, full)

    def take_ready(self) -> set[str]:
        """Peer ids that got new control messages or servable data since the last call."""
        return self.outbox.take_ready()

    def pop_events(self) -> list[Event]:
        return self.outbox.pop_events()

    # ---------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        """When handle_timer wants to run next (None: only input can change anything)."""
        times = [
            self.announcer.next_due_s(),
            self.fetching.next_timer_s(),
            None if self.seeder is None else self.seeder.next_timer_s(),
            self.playout.next_deadline_s(self._now),
            self.exchange.next_due_s(),
        ]
        if self._next_want_s is not None and len(self._nbrs) < self.config.target_neighbours:
            times.append(self._next_want_s)
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def handle_timer(self, now: float) -> None:
        self._now = now
        self.announcer.flush_due(now)
        self.fetching.time_outs(now)
        if self.seeder is not None:
            self.seeder.handle_timer(now)
        self.exchange.flush_due(now)
        if (
            self._next_want_s is not None
            and now >= self._next_want_s
            and len(self._nbrs) < self.config.target_neighbours
        ):
            self.outbox.emit(WantNeighbours(self.config.target_neighbours - len(self._nbrs)))
            self._next_want_s = now + self.config.want_neighbours_interval_s
        # Timeouts and rescues reschedule by themselves; the clock alone changes the plan at
        # the fetcher's replan time.
        self.fetching.rescue_slow(now)
        self.fetching.replan_by_clock(now)
        self._after(now)

    # ---------------------------------------------------------------- stats

    def have_interval_s(self) -> float:
        return self.announcer.have_interval_s()

    def stats(self) -> dict[str, Any]:
        """Figures for `streamer watch/relay/broadcast --stats-json` and the simulator."""
        pb = self.playback
        lags = pb.lags_s if pb else []
        fetching = self.fetching
        return {
            "role": self.role.name.lower(),
            "startup_s": pb.startup_s if pb else None,
            "continuity": pb.continuity if pb else None,
            "lag_s_p50": percentile(lags, 0.5),
            "lag_s_p95": percentile(lags, 0.95),
            "chunks_played": pb.played if pb else 0,
            "chunks_late": pb.late if pb else 0,
            "chunks_missed": pb.missed if pb else 0,
            "lag_added_s": pb.lag_added_s if pb else 0.0,
            "stall_s": pb.stall_s if pb else 0.0,
            "reanchored_s": pb.reanchored_s if pb else 0.0,
            "reanchors": pb.reanchors if pb else 0,
            "paused_s": pb.paused_s if pb else 0.0,
            "longest_pause_s": pb.longest_pause_s if pb else 0.0,
            "upload_stopped_s": (
                None if self.upload_stopped_s is None else self.upload_stopped_s - self._joined_s
            ),
            "not_on_time": list(pb.not_on_time) if pb else [],
            "bytes_from_source": fetching.bytes_from_source,
            "bytes_from_peers": fetching.bytes_from_peers,
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_duplicate": fetching.bytes_duplicate,
            "timeouts": fetching.timeouts,
            "rescues": fetching.rescues,
            "moved": fetching.moved,
            "stream_bytes": self.stream_bytes,
            "neighbours": len(self._nbrs),
            "have_interval_s": self.have_interval_s(),
            "uplink_capacity_bps": (
                None if (c := self._uplink.capacity_bytes_per_s) is None else round(c * 8)
            ),
            "uplink_delivered_bps": (
                None if (r := self._delivered.best_bytes_per_s) is None else round(r * 8)
            ),
            "complete_after_release_s_p50": percentile(fetching.complete_after_release_s, 0.5),
            "complete_after_release_s_p95": percentile(fetching.complete_after_release_s, 0.95),
            "drops": dict(self.drops),
            "exchange_hints": self.exchange.hinted_count(self._now),
            "signals_relayed": self.exchange.signals_relayed,
            "signals_dropped": self.exchange.signals_dropped,
            "startup_phases": self.playout.startup_phases(self._first_link_s),
            "neighbour_figures": {
                nb.peer_id: nb.figures() for nb in sorted(self._nbrs.values(), key=_by_id)
            },
        }

    # ---------------------------------------------------------------- message handling

    def _handle(self, nb: Neighbour, msg: Message, size_bytes: int, now: float) -> None:
        if isinstance(msg, Piece):
            self._on_piece(nb, msg, size_bytes, now)
        elif isinstance(msg, Have):
            if not self._on_have(nb, msg, now):
                return
        elif isinstance(msg, Request):
            self._check_seq(msg.seq, "request")
            self.serving.on_request(nb, msg, now)
            return  # serving changes nothing we want: no rescheduling
        elif isinstance(msg, ChunkHeader):
            self._check_seq(msg.seq, "chunk header")
            fresh, replan = self.fetching.on_header(nb, msg, now)
            if fresh:
                self.playout.heard(msg.seq, now)
                self.announcer.announce(msg.seq, nb.peer_id, now)
            self._take_held(msg.seq, now)
            if not replan:
                return
        elif isinstance(msg, BufferMap):
            seqs = msg.seqs()
            if seqs:
                self._check_seq(seqs[-1], "buffer map")
                nb.complete.update(s for s in seqs if s >= self.store.floor_seq)
                self.playout.heard(seqs[-1], now, at_peer=not nb.is_source)
        elif isinstance(msg, Hello):
            if msg.version != PROTOCOL_VERSION:
                self._drop(nb, f"protocol version {msg.version}", ByeReason.VERSION)
                return
            nb.hello_received = True
            nb.role = msg.role
            nb.capabilities = msg.capabilities
            nb.uploads = bool(msg.capabilities & Capability.UPLOAD)
        elif isinstance(msg, Cancel):
            self.serving.on_cancel(nb, msg)
            return
        elif isinstance(msg, Absent):
            self.fetching.on_absent(nb, msg, now)
        elif isinstance(msg, Bye):
            self._forget(nb, f"bye: {msg.reason} {msg.text}".strip(), None)
            return
        elif isinstance(msg, Peers):
            self.exchange.on_peers(nb, msg, now)
            return
        elif isinstance(msg, Signal):
            self.exchange.on_signal(nb, msg, now)
            return
        elif isinstance(msg, Unknown):
            return
        self.fetching.replan()

    def _on_have(self, nb: Neighbour, msg: Have, now: float) -> bool:
        """Record what nb holds; True if that may change what we ask of whom."""
        self._check_seq(msg.seq, "have")
        if msg.seq < self.store.floor_seq:
            return False
        nb.announced_s.setdefault(msg.seq, now)
        before = nb.known_mask(msg.seq)
        if msg.complete:
            nb.complete.add(msg.seq)
            nb.partial.pop(msg.seq, None)
        elif msg.seq not in nb.complete:
            nb.partial[msg.seq] = before | bits_mask(msg.pieces)
        self.playout.heard(msg.seq, now, at_peer=msg.complete and not nb.is_source)
        if self.seeder is not None:
            self.seeder.heard_have(nb, msg.seq, bits_mask(msg.pieces), before, now)
            return False
        if not self.fetching.wants_news(msg.seq, before, nb.known_mask(msg.seq)):
            return False  # nothing new for us: no need to reschedule (most haves)
        # Only nb holds anything new: if it has no room for more requests, the plan cannot
        # change until it has (a piece from it reschedules).
        return nb.is_source or self.fetching.room(nb) > 0

    def _take_held(self, seq: int, now: float) -> None:
        """Pieces that came before seq's header: fed in now that it is stored (dropped if the
        header was a forgery: nothing is stored for seq then)."""
        if self.store.get(seq) is None:
            return
        for peer_id, piece, size_bytes in self.fetching.take_held(seq):
            sender = self._nbrs.get(peer_id)
            if sender is not None:
                self._on_piece(sender, piece, size_bytes, now, replay=True)

    def _on_piece(
        self, nb: Neighbour, msg: Piece, size_bytes: int, now: float, replay: bool = False
    ) -> None:
        if self.fetching.on_piece(nb, msg, size_bytes, now, replay) is not PieceResult.NEW:
            return
        self.serving.wake_for(msg.seq)
        chunk = self.store.get(msg.seq)
        if chunk is None:
            return
        if chunk.complete:
            self.fetching.completed(msg.seq, chunk.header.release_us / 1e6, now)
            pieces = tuple(p for p in chunk.pieces if p is not None)
            self.outbox.emit(ChunkComplete(msg.seq, chunk.header, pieces))
            self.playout.completed(chunk, now)
            self.announcer.announce(msg.seq, None, now)
        else:
            # Piece-level knowledge: neighbours ask us for exactly the pieces we hold.
            self.announcer.announce(msg.seq, None, now)

    def _check_seq(self, seq: int, what: str) -> None:
        """A seq far beyond anything the source has signed is a lie or garbage."""
        anchor = self.store.newest_seq
        if anchor is not None and seq > anchor + self.config.max_ahead_chunks:
            raise ProtocolError(f"{what}: seq {seq} is far ahead of the stream ({anchor})")

    # ---------------------------------------------------------------- after every input

    def _after(self, now: float) -> None:
        """Run after every input: playout, window, scheduling."""
        self._uplink.sample(self.bytes_uploaded, self.serving.backlogged(now), now)
        due, floor = self.playout.play(now)
        if due:
            self.fetching.replan()
        if floor is not None:
            self._evict_below(floor)
        if self.role != Role.SOURCE:
            self.fetching.run(now)

    @property
    def uplink_delivered_bytes_per_s(self) -> float | None:
        """The best rate our uplink delivered under demand lately (None: not measured yet)."""
        return self._delivered.best_bytes_per_s

    def uplink_delivered(self, delivered_bytes: int, outstanding_bytes: int, now: float) -> None:
        """The driver's count of every byte its transport has delivered (acknowledged) to our
        neighbours so far, data and control, and of the bytes it holds not yet acknowledged
        (queued or in flight), all links together, given every fraction of a second. A viewer
        whose uplink, with work, delivers less than upload_min_uplink_share of the stream's
        rate stops uploading: a narrow uplink that uploads queues our own requests, haves and
        SACKs behind its pieces, and every peer waits for the first copies it holds."""
        self._now = now
        pressed = self.serving.pressed() or outstanding_bytes >= self._config.piece_size_bytes
        self._delivered.sample(delivered_bytes, pressed, now)
        share = self._config.upload_min_uplink_share
        if not self.upload or self.role != Role.VIEWER or share <= 0:
            return
        best = self._delivered.best_bytes_per_s
        if best is None:
            return
        rate = self.store.stream_bytes_per_s()
        if rate is None or best >= share * rate:
            return
        self.upload = False
        self.upload_stopped_s = now
        self.serving.stop()
        for nb in self._nbrs.values():
            self.announcer.hello(nb, upload=False)

    def _evict_below(self, floor_seq: int) -> None:
        """Playout moved on: forget chunks older than the window."""
        for seq in self.fetching.seqs_below(floor_seq):
            self._abandon(seq)
        self.store.evict_below(floor_seq)
        self.fetching.evict_below(floor_seq)
        self.serving.evict_below(floor_seq)
        for nb in self._nbrs.values():
            nb.forget_below(floor_seq)

    def _abandon(self, seq: int) -> None:
        """Stop fetching seq (played past it); neighbours waiting on its pieces get absent."""
        if self.fetching.abandon(seq):
            self.serving.wake_all()

    def _drop(self, nb: Neighbour, reason: str, bye_reason: ByeReason) -> None:
        if bye_reason in (ByeReason.FORGED, ByeReason.PROTOCOL_ERROR):
            self.banned.add(nb.peer_id)
        bye = encode_message(Bye(bye_reason, reason))
        self._forget(nb, reason, bye)

    def _forget(self, nb: Neighbour, reason: str, bye: bytes | None) -> None:
        if nb.peer_id not in self._nbrs:
            return
        kind = reason.split(":")[0].split(" ")[0]
        self.drops[kind] = self.drops.get(kind, 0) + 1
        self.outbox.emit(DropNeighbour(nb.peer_id, reason, bye))
        self.remove_neighbour(nb.peer_id, self._now)


def _by_id(nb: Neighbour) -> str:
    return nb.peer_id
