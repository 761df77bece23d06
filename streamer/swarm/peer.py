"""SwarmPeer: one peer's sans-I/O swarm state machine (source, relay or viewer).

Rules this module never breaks: no asyncio, no sockets, no `time` - every entry point takes `now`
(seconds, on one monotonic-or-Unix clock chosen by the driver); randomness comes from an injected
seeded generator (Mulberry32, the JS core's too); a malformed or hostile message drops only its
sender; nothing unverified is stored, played or forwarded. See streamer/swarm/__init__.py for the
driver's API in one page.
"""

from __future__ import annotations

import math
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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
    Piece,
    ProtocolError,
    Request,
    Role,
    Unknown,
    decode_message,
    encode_message,
    make_chunk_header,
    split_pieces,
)
from streamer.protocol.messages import MAX_BUFFER_MAP_BITS
from streamer.swarm.chunks import ChunkBuffer, ChunkStore, HeaderVerifier, PiecePool, PieceResult
from streamer.swarm.config import SwarmConfig
from streamer.swarm.events import (
    ChunkComplete,
    ChunkMissed,
    ChunkPlayed,
    DropNeighbour,
    Event,
    WantNeighbours,
)
from streamer.swarm.neighbours import Assignment, Neighbour, ServeItem, UplinkMeter
from streamer.swarm.playback import Playback
from streamer.swarm.scheduler import (
    Ask,
    Holder,
    Mulberry32,
    RandomSource,
    Want,
    may_serve,
    plan_pieces,
)
from streamer.swarm.seeding import assign_first_copies, seed_weights

ALL_PIECES = 0xFFFF
"""Range count meaning 'to the end of the chunk' (ranges are clamped to the piece count)."""


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted indices -> [(first, count)] of contiguous runs."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


class SwarmPeer:
    """One peer of a channel. The source publishes chunks; relays and viewers pull and forward."""

    def __init__(
        self,
        *,
        role: Role,
        now: float,
        config: SwarmConfig | None = None,
        verifier: HeaderVerifier | None = None,
        signing_key: Ed25519PrivateKey | None = None,
        epoch: int = 0,
        rng: RandomSource | None = None,
        upload: bool = True,
        piece_pool: PiecePool | None = None,
    ) -> None:
        if role == Role.SOURCE and signing_key is None:
            raise ValueError("the source needs its signing key")
        if role != Role.SOURCE and verifier is None:
            raise ValueError("a relay or viewer needs the source's public key (a HeaderVerifier)")
        self.role = role
        self.config = config or SwarmConfig()
        self._signing_key = signing_key
        self._epoch = epoch
        """The source's broadcast session, signed into every chunk header."""
        self._rng = rng or Mulberry32(0)
        self.upload = upload or role == Role.SOURCE
        self._store = ChunkStore(verifier, piece_pool)
        """piece_pool: a simulator's shared store of verified payloads (memory, not behaviour)."""
        self._nbrs: dict[str, Neighbour] = {}
        self._inflight: dict[int, dict[int, str]] = {}
        """seq -> piece index -> the neighbour we asked for it (one at a time per piece)."""
        self._header_from: dict[int, str] = {}
        """seq -> the neighbour we asked for its header (we hold no verified header yet)."""
        self._header_s: dict[int, float] = {}
        """seq -> when we verified its header: neighbours that announced it before are 'earlier'."""
        self._serve_order = 0
        self._sent_once: dict[int, int] = {}
        """seq -> bitmask of the pieces we have uploaded at least once (see _serve_key)."""
        self._events: list[Event] = []
        self._ready: set[str] = set()
        self._uploads: list[ServeItem] = []
        """Requests from all neighbours, oldest first (the upload queue)."""
        self._dirty = True
        self._now = now
        self._newest_heard: int | None = None
        self._newest_at_peer: int | None = None
        """The newest seq a neighbour other than the source holds whole (the start point)."""
        self._first_heard_s = now
        """When we first heard of any chunk (the start point settles for start_settle_s)."""
        self._next_want_s: float | None = None if role == Role.SOURCE else now
        self._replan_at_s: float | None = None
        """When the plan may change by the clock alone (a chunk turning urgent, a not_from
        period ending): a timer then, unless input replans first."""
        self._work_pending = False
        """The last plan left wanted pieces unasked: every timer replans (room frees up with
        inputs that are not all worth a replan of their own)."""
        self.playback: Playback | None = None
        if role != Role.SOURCE:
            self.playback = Playback(
                chunk_duration_s=self.config.chunk_duration_s,
                start_behind_chunks=self.config.start_behind_chunks,
                target_lag_s=self.config.target_lag_s,
                joined_s=now,
                start_margin_s=self.config.start_margin_s,
                lag_margin_s=self.config.lag_margin_s,
                lag_step_s=self.config.lag_step_s,
                stall_step_s=self.config.stall_step_s,
                max_stall_s=self.config.max_stall_s,
                max_lag_added_s=self.config.max_lag_added_s,
                catch_up_margin_s=self.config.catch_up_margin_s,
                catch_up_step_s=self.config.catch_up_step_s,
                catch_up_chunks=self.config.catch_up_chunks,
            )
        # source state
        self._announce_later: dict[int, tuple[float, list[str]]] = {}
        self._reseed_at: dict[int, float] = {}
        """seq -> when to look again for first copies that have not spread (see _reseed_stuck)."""
        self._source_reserved: dict[int, int] = {}
        """seq -> bytes of copies beyond the first that are queued or sent (the budget)."""
        self._seed_target: dict[int, dict[int, str]] = {}
        """seq -> piece index -> the neighbour we super-seeded it to (its first copy)."""
        self._reseeded: dict[int, dict[int, set[str]]] = {}
        """seq -> piece index -> neighbours offered it again since its first copy did not
        spread (see _reseed_stuck): their copies are first copies too, outside the budget."""
        self._seed_turn = 0
        self._seed_sent_s: dict[int, dict[str, float]] = {}
        """seq -> neighbour -> when we super-seeded it pieces of seq (until it asks for them)."""
        self._seed_credit: dict[str, float] = {}
        """Weighted round robin of first copies over uploaders (see _seed_weights)."""
        self._source_spread: dict[int, dict[int, int]] = {}
        """seq -> piece index -> how many neighbours announced it without getting it from us:
        at source_spread_holders, its first copy is spreading through the swarm."""
        # stats
        self.bytes_from_source = 0
        self.bytes_from_peers = 0
        self.bytes_uploaded = 0
        self.bytes_duplicate = 0
        self.timeouts = 0
        self.rescues = 0
        """Urgent requests taken from a holder too slow to meet the deadline."""
        self.moved = 0
        """Pieces asked of another holder after sitting unsent at the first (move_after_s)."""
        self.complete_after_release_s: list[float] = []
        """Per chunk completed here: seconds from its release at the source (clocks agreeing)."""
        self._uplink = UplinkMeter()
        self.stream_bytes = 0
        self.drops: dict[str, int] = {}
        self.banned: set[str] = set()
        """Peers that sent forged or malformed data: never accepted as neighbours again."""

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
        caps = Capability.PARTIAL | (Capability.UPLOAD if self.upload else Capability.NONE)
        nb.control.append(encode_message(Hello(PROTOCOL_VERSION, self.role, caps)))
        have = self._store.complete_seqs()
        if have:
            base = max(have[0], have[-1] - MAX_BUFFER_MAP_BITS + 1)
            members = set(have)
            bits = tuple(s in members for s in range(base, have[-1] + 1))
            nb.control.append(encode_message(BufferMap(base, bits)))
        self._ready.add(peer_id)
        return True

    def remove_neighbour(self, peer_id: str, now: float) -> None:
        """The link to peer_id closed (or the driver gave up on it). Its requests go elsewhere."""
        self._now = now
        nb = self._nbrs.pop(peer_id, None)
        if nb is None:
            return
        for a in nb.assignments.values():
            self._release_asked(peer_id, a.seq, a.pieces, a.header_pending)
        for item in nb.serving:
            self._release(item)
        self._uploads = [item for item in self._uploads if item.peer_id != peer_id]
        self._ready.discard(peer_id)
        self._dirty = True
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

    def publish_chunk(
        self, seq: int, data: bytes, start_s: float, duration_s: float, now: float
    ) -> None:
        """Source only: split, sign and offer a freshly released chunk."""
        if self.role != Role.SOURCE or self._signing_key is None:
            raise RuntimeError("only the source publishes chunks")
        header = make_chunk_header(
            seq=seq,
            data=data,
            start_us=round(start_s * 1e6),
            duration_us=round(duration_s * 1e6),
            release_us=round(now * 1e6),
            piece_size=self.config.piece_size_bytes,
            signing_key=self._signing_key,
            epoch=self._epoch,
        )
        self.publish_signed(header, data, now)

    def publish_signed(self, header: ChunkHeader, data: bytes, now: float) -> None:
        """Source only: offer a chunk whose header the driver signed (JS: publishChunk)."""
        if self.role != Role.SOURCE:
            raise RuntimeError("only the source publishes chunks")
        self._now = now
        seq = header.seq
        self._store.add_own(header, split_pieces(data, header.piece_size))
        self.stream_bytes += len(data)
        self._super_seed(seq, header.piece_count)
        if self._nbrs:
            when = now + self.config.source_announce_delay_s
            self._announce_later[seq] = (when, list(self._nbrs))
        floor = seq - self.config.source_keep_chunks + 1
        self._store.evict_below(floor)
        for table in (
            self._source_reserved,
            self._sent_once,
            self._seed_target,
            self._reseeded,
            self._source_spread,
            self._reseed_at,
            self._seed_sent_s,
        ):
            for old in [s for s in table if s < floor]:
                del table[old]
        for nb in self._nbrs.values():
            nb.forget_below(floor)
        self._after(now)

    def _super_seed(self, seq: int, piece_count: int) -> None:
        """Advertise each piece of a fresh chunk to one uploading neighbour, different pieces to
        different neighbours, so the first copies land on many peers and their uplinks all start
        working at once; more of them on neighbours that ask soon for what they are offered
        (see streamer.swarm.seeding).

        Relays get no preference by role: a relay may be upload-capped, and a first copy stuck
        behind a slow uplink delays that piece for everyone. Only neighbours linked into the
        swarm are seeded (see source_seed_proof_s); if none is, all uploaders are.
        """
        proof_s = self.config.source_seed_proof_s
        uploaders = [nb for nb in self._nbrs.values() if nb.uploads and not nb.is_source]
        linked = [
            nb
            for nb in uploaders
            if self._now - nb.connected_s < proof_s
            or (nb.fed_by_peers_s is not None and self._now - nb.fed_by_peers_s < proof_s)
        ]
        order = sorted(linked or uploaders, key=lambda nb: nb.peer_id)
        if not order:
            return
        responses = {nb.peer_id: nb.seed_response.base_s for nb in order}
        weights = seed_weights(
            responses, self.config.source_seed_response_floor_s, self.config.initial_response_s
        )
        bits: dict[str, list[bool]] = {}
        targets = self._seed_target.setdefault(seq, {})
        for index, pid in enumerate(assign_first_copies(weights, piece_count, self._seed_credit)):
            bits.setdefault(pid, [False] * piece_count)[index] = True
            targets[index] = pid
        self._seed_turn += piece_count
        sent = self._seed_sent_s.setdefault(seq, {})
        for pid, mask_bits in bits.items():
            sent[pid] = self._now
            self._send_have(self._nbrs[pid], seq, tuple(mask_bits))

    def _reseed_stuck(self, seq: int, piece_count: int) -> None:
        """Offer pieces whose first copy has not spread yet to one more linked uploader each.

        A first copy can sit at a neighbour whose uplink is slow or queued; until the whole-chunk
        announce, nobody else may know it exists, and after it everyone would wait for it to
        turn urgent. The offer is repeated every source_reseed_interval_s while the chunk is
        young, each time to an uploader not offered it yet (one may leave or be slow too). Such
        a copy is served even when fallback requests have spent the budget (_source_admit).
        """
        spread = self._source_spread.get(seq, {})
        enough = self.config.source_spread_holders
        targets = self._seed_target.get(seq, {})
        stuck = [i for i in range(piece_count) if spread.get(i, 0) < enough and i in targets]
        if not stuck:
            return
        proof_s = self.config.source_seed_proof_s
        order = sorted(
            (
                nb
                for nb in self._nbrs.values()
                if nb.uploads
                and not nb.is_source
                and nb.fed_by_peers_s is not None
                and self._now - nb.fed_by_peers_s < proof_s
            ),
            key=lambda nb: nb.peer_id,
        )
        bits: dict[str, list[bool]] = {}
        reseeded = self._reseeded.setdefault(seq, {})
        for n, index in enumerate(stuck):
            tried = reseeded.setdefault(index, set())
            first = targets[index]
            choices = [
                nb
                for nb in order
                if nb.peer_id != first and nb.peer_id not in tried and seq not in nb.complete
            ]
            choices = [nb for nb in choices if not nb.known_mask(seq) >> index & 1]
            if not choices:
                continue
            pick = choices[(self._seed_turn + n) % len(choices)]
            tried.add(pick.peer_id)
            bits.setdefault(pick.peer_id, [False] * piece_count)[index] = True
        for pid, mask_bits in bits.items():
            self._send_have(self._nbrs[pid], seq, tuple(mask_bits))

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
        for item in self._slot_items():
            if item.peer_id == peer_id:
                out = self._serve(item)
                self.bytes_uploaded += len(out)
                nb = self._nbrs[peer_id]
                nb.bytes_sent += len(out)
                return out
        return None

    def upload_peers(self) -> list[str]:
        """Peer ids whose requests hold an upload slot now: pump next_data_message for these."""
        seen: list[str] = []
        for item in self._slot_items():
            if item.peer_id not in seen:
                seen.append(item.peer_id)
        return seen

    def take_ready(self) -> set[str]:
        """Peer ids that got new control messages or servable data since the last call."""
        ready, self._ready = self._ready, set()
        return ready

    def pop_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # ---------------------------------------------------------------- timers

    def next_timer(self) -> float | None:
        """When handle_timer wants to run next (None: only input can change anything)."""
        # Called after every input (the simulator's second hot spot): one pass, no lists.
        inf = math.inf
        soonest = inf
        # (_timeout_s, inlined)
        request_timeout_s = self.config.request_timeout_s
        initial_response_s = self.config.initial_response_s
        for nb in self._nbrs.values():
            if nb.have_due and nb.have_next_s < soonest:
                soonest = nb.have_next_s
            if not nb.assignments:
                continue
            base_s = nb.response.base_s
            timeout_s = request_timeout_s + (initial_response_s if base_s is None else base_s)
            for a in nb.assignments.values():
                due_s = a.last_progress_s + timeout_s
                if due_s < soonest:
                    soonest = due_s
        for when, _ in self._announce_later.values():
            soonest = min(soonest, when)
        for when in self._reseed_at.values():
            soonest = min(soonest, when)
        if self._next_want_s is not None and len(self._nbrs) < self.config.target_neighbours:
            soonest = min(soonest, self._next_want_s)
        pb = self.playback
        if pb is not None and pb.started and pb.next_seq is not None and not pb.waiting_at_edge:
            soonest = min(
                soonest, pb.deadline(pb.next_seq, self._media_start_s(pb.next_seq), self._now)
            )
        if self._replan_at_s is not None:
            soonest = min(soonest, self._replan_at_s)
        return None if soonest == inf else soonest

    def handle_timer(self, now: float) -> None:
        self._now = now
        for nb in self._nbrs.values():
            if nb.have_due and now >= nb.have_next_s:
                self._flush_haves(nb)
        for nb in list(self._nbrs.values()):
            timeout_s = self._timeout_s(nb)
            for seq, a in list(nb.assignments.items()):
                due_s = a.last_progress_s + timeout_s
                if nb.peer_id in self._nbrs and now >= due_s:
                    self._time_out(nb, seq, now)
        for seq, (when, pids) in list(self._announce_later.items()):
            if when <= now:
                del self._announce_later[seq]
                chunk = self._store.get(seq)
                if chunk is None:
                    continue
                self._reseed_stuck(seq, chunk.header.piece_count)
                self._reseed_at[seq] = now + self.config.source_reseed_interval_s
                bits = header_bits(chunk.header.piece_count)
                for pid in pids:
                    target = self._nbrs.get(pid)
                    if target is not None and seq not in target.complete:
                        self._send_have(target, seq, bits)
        for seq, when in list(self._reseed_at.items()):
            if when <= now:
                chunk = self._store.get(seq)
                window_s = self.config.source_reseed_window_s
                if chunk is None or now - chunk.header.release_us / 1e6 > window_s:
                    del self._reseed_at[seq]
                    continue
                self._reseed_stuck(seq, chunk.header.piece_count)
                self._reseed_at[seq] = now + self.config.source_reseed_interval_s
        if (
            self._next_want_s is not None
            and now >= self._next_want_s
            and len(self._nbrs) < self.config.target_neighbours
        ):
            self._events.append(WantNeighbours(self.config.target_neighbours - len(self._nbrs)))
            self._next_want_s = now + self.config.want_neighbours_interval_s
        # Timeouts and rescues reschedule by themselves; the clock alone changes the plan at
        # _replan_at_s. Most timers are have flushes and playout deadlines: nothing to replan,
        # unless work is pending (without these retries, stalls per viewer went 0.04 -> 0.11 s
        # at 100 peers, 8 seeds).
        self._rescue_slow(now)
        if self._work_pending or (self._replan_at_s is not None and now >= self._replan_at_s):
            self._dirty = True
        self._after(now)

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict[str, Any]:
        """Figures for `streamer watch/relay/broadcast --stats-json` and the simulator."""
        pb = self.playback
        lags = pb.lags_s if pb else []
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
            "bytes_from_source": self.bytes_from_source,
            "bytes_from_peers": self.bytes_from_peers,
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_duplicate": self.bytes_duplicate,
            "timeouts": self.timeouts,
            "rescues": self.rescues,
            "moved": self.moved,
            "stream_bytes": self.stream_bytes,
            "neighbours": len(self._nbrs),
            "have_interval_s": self.have_interval_s(),
            "complete_after_release_s_p50": percentile(self.complete_after_release_s, 0.5),
            "complete_after_release_s_p95": percentile(self.complete_after_release_s, 0.95),
            "drops": dict(self.drops),
            "neighbour_figures": {
                nb.peer_id: nb.figures() for nb in sorted(self._nbrs.values(), key=_by_id)
            },
        }

    # ---------------------------------------------------------------- message handling

    def _handle(self, nb: Neighbour, msg: Message, size_bytes: int, now: float) -> None:
        if isinstance(msg, Piece):
            self._on_piece(nb, msg, size_bytes, now)
        elif isinstance(msg, Have):
            self._check_seq(msg.seq, "have")
            if msg.seq < self._store.floor_seq:
                return
            nb.announced_s.setdefault(msg.seq, now)
            before = nb.known_mask(msg.seq)
            if msg.complete:
                nb.complete.add(msg.seq)
                nb.partial.pop(msg.seq, None)
            elif msg.seq not in nb.complete:
                nb.partial[msg.seq] = before | _mask(msg.pieces)
            self._heard(msg.seq, at_peer=msg.complete and not nb.is_source)
            if self.role == Role.SOURCE:
                fed = _mask(msg.pieces) & ~nb.sent_mask.get(msg.seq, 0)
                if fed:
                    nb.fed_by_peers_s = now
                    news = fed & ~before  # (each neighbour counts once per piece)
                    if news:
                        counts = self._source_spread.setdefault(msg.seq, {})
                        for i in range(len(msg.pieces)):
                            if news >> i & 1:
                                counts[i] = counts.get(i, 0) + 1
                return
            if not self._wants_news(msg.seq, before, nb.known_mask(msg.seq)):
                return  # nothing new for us: no need to reschedule (most haves)
            if not nb.is_source and self._room(nb) <= 0:
                # Only nb holds anything new, and it has no room for more requests: the plan
                # cannot change until it has (a piece from it reschedules).
                return
        elif isinstance(msg, Request):
            self._on_request(nb, msg)
            return  # serving changes nothing we want: no rescheduling
        elif isinstance(msg, ChunkHeader):
            if not self._on_header(nb, msg, now):
                return
        elif isinstance(msg, BufferMap):
            seqs = msg.seqs()
            if seqs:
                self._check_seq(seqs[-1], "buffer map")
                nb.complete.update(s for s in seqs if s >= self._store.floor_seq)
                self._heard(seqs[-1], at_peer=not nb.is_source)
        elif isinstance(msg, Hello):
            if msg.version != PROTOCOL_VERSION:
                self._drop(nb, f"protocol version {msg.version}", ByeReason.VERSION)
                return
            nb.hello_received = True
            nb.role = msg.role
            nb.capabilities = msg.capabilities
            nb.uploads = bool(msg.capabilities & Capability.UPLOAD)
        elif isinstance(msg, Cancel):
            self._on_cancel(nb, msg)
            return
        elif isinstance(msg, Absent):
            self._on_absent(nb, msg, now)
        elif isinstance(msg, Bye):
            self._forget(nb, f"bye: {msg.reason} {msg.text}".strip(), None)
            return
        elif isinstance(msg, Unknown):
            return
        self._dirty = True

    def _wants_news(self, seq: int, before: int, after: int) -> bool:
        """Did a have (known mask before -> after) offer something we need and nobody is
        fetching for us yet (a header, or a missing piece)? Only then is it worth rescheduling."""
        if after == before and before != 0:
            return False
        chunk = self._store.get(seq)
        if chunk is None:
            return seq not in self._header_from
        if chunk.complete or chunk.abandoned:
            return False
        offered = chunk.full_mask if after == -1 else after & ~before
        wanted = offered & ~chunk.held_mask
        if not wanted:
            return False
        return any(
            wanted >> i & 1
            for i in range(len(chunk.pieces))
            if i not in self._inflight.get(seq, {})
        )

    def _check_seq(self, seq: int, what: str) -> None:
        """A seq far beyond anything the source has signed is a lie or garbage."""
        anchor = self._store.newest_seq
        if anchor is not None and seq > anchor + self.config.max_ahead_chunks:
            raise ProtocolError(f"{what}: seq {seq} is far ahead of the stream ({anchor})")

    def _heard(self, seq: int, at_peer: bool = False) -> None:
        """seq exists (at_peer: a neighbour other than the source holds all of it)."""
        if self._newest_heard is None or seq > self._newest_heard:
            if self._newest_heard is None:
                self._first_heard_s = self._now
            self._newest_heard = seq
        if at_peer and (self._newest_at_peer is None or seq > self._newest_at_peer):
            self._newest_at_peer = seq
        pb = self.playback
        if pb is None:
            return
        pb.hear_of(seq)
        if pb.started or pb.start_seq is None:
            return
        frontier = self._newest_at_peer
        if frontier is not None:
            # Start where the peers are, one chunk past the newest a peer holds whole. That
            # one has crossed the swarm already (its age is the swarm's spread time), and
            # fetching it would add our fetch to that age; the next one is crossing now and
            # completes for us about when it does for the others.
            past = self.config.start_past_peers_chunks
            start = max(0, min(frontier + past, self._newest_heard))
            settling = self._now - self._first_heard_s < self.config.start_settle_s
            # A start chunk we hold pieces of is kept: on a slow link, chasing the frontier
            # threw away every start chunk half fetched, and playout never began (test bed:
            # a 0.4 Mbit/s uplink viewer downloaded 30 s of pieces and completed 3 chunks).
            fetching = (chunk := self._store.get(pb.start_seq)) is not None and chunk.have_count > 0
            if (
                pb.start_from_peers is None
                or start < pb.start_seq
                or (start - pb.start_seq > 2 and not fetching)
                or (settling and start > pb.start_seq)
            ):
                pb.start_from_peers = start
                pb.start_seq = pb.next_seq = start
        elif seq - pb.start_seq > pb.start_behind_chunks + 2:
            # Never chase a start point that fell far behind before we could fetch it.
            pb.start_seq = pb.next_seq = seq - pb.start_behind_chunks

    def _on_request(self, nb: Neighbour, msg: Request) -> None:
        """Queue the request; absent only for what we cannot serve (no chunk, gone, budget).

        There is no 'busy' answer: requesters limit what they keep in flight with us, and the
        queue is served most urgent first, so a request waits its turn instead of bouncing.
        """
        self._check_seq(msg.seq, "request")
        if len(nb.serving) >= self.config.max_serve_queue:
            raise ProtocolError(f"more than {self.config.max_serve_queue} outstanding requests")
        chunk = self._store.get(msg.seq)
        if not self.upload or chunk is None:
            self._send_control(nb, encode_message(Absent(msg.seq, msg.first_index, msg.count)))
            return
        last = min(msg.first_index + msg.count, len(chunk.pieces))
        indices = list(range(msg.first_index, last))
        if chunk.abandoned:
            indices = [i for i in indices if chunk.pieces[i] is not None]
        if not indices and not msg.want_header:
            self._send_control(nb, encode_message(Absent(msg.seq, msg.first_index, msg.count)))
            return
        reserved = 0
        if self.role == Role.SOURCE:
            sent_s = self._seed_sent_s.get(msg.seq, {}).pop(nb.peer_id, None)
            if sent_s is not None:
                nb.seed_response.sample(self._now - sent_s)
            indices, refused, reserved = self._source_admit(nb, chunk, indices)
            for first, count in _runs(refused):
                self._send_control(nb, encode_message(Absent(msg.seq, first, count)))
            if not indices and not msg.want_header:
                return
        self._serve_order += 1
        item = ServeItem(
            nb.peer_id, msg.seq, indices, msg.want_header, self._serve_order, reserved, self._now
        )
        nb.serving.append(item)
        self._uploads.append(item)
        self._ready.add(nb.peer_id)

    def _source_admit(
        self, nb: Neighbour, chunk: ChunkBuffer, indices: list[int]
    ) -> tuple[list[int], list[int], int]:
        """Which requested pieces the source serves: (served, refused, bytes of extra copies).

        A first copy (a piece super-seeded to this very neighbour) is always served; the budget
        bounds the copies beyond it, so fallback requests cannot crowd it out. (A piece
        super-seeded to nobody has its first copy claimed by its first requester.) A piece
        offered again because its first copy did not spread is served like a first copy, but
        counts against the budget, leaving less for fallback. No neighbour takes more than
        source_max_share of the budget.
        """
        seq = chunk.header.seq
        seeded = self._seed_target.setdefault(seq, {})
        reseeded = self._reseeded.get(seq, {})
        budget = (self.config.source_max_copies - 1.0) * chunk.header.total_size
        share = self.config.source_max_share * budget
        total = self._source_reserved.get(seq, 0)
        mine = nb.extra_bytes.get(seq, 0)
        served: list[int] = []
        refused: list[int] = []
        for i in indices:
            if seeded.setdefault(i, nb.peer_id) != nb.peer_id:
                size = chunk.header.piece_length(i)
                offered_again = nb.peer_id in reseeded.get(i, ())
                if not offered_again and (total + size > budget or mine + size > share):
                    refused.append(i)
                    continue
                total += size
                mine += size
            served.append(i)
        reserved = mine - nb.extra_bytes.get(seq, 0)
        self._source_reserved[seq] = total
        nb.extra_bytes[seq] = mine
        return served, refused, reserved

    def _on_cancel(self, nb: Neighbour, msg: Cancel) -> None:
        end = msg.first_index + msg.count
        for item in list(nb.serving):
            if item.seq != msg.seq:
                continue
            keep = [i for i in item.pieces if not msg.first_index <= i < end]
            self._release(item, dropped=[i for i in item.pieces if msg.first_index <= i < end])
            item.pieces = keep
            if not keep:
                # A header still owed is dropped too: the requester gave up on these pieces.
                self._unqueue(item)

    def _on_absent(self, nb: Neighbour, msg: Absent, now: float) -> None:
        """'Not from me': forget what we asked it for in that range, ask others for a while."""
        nb.not_from[msg.seq] = now + self.config.busy_retry_s
        a = nb.assignments.get(msg.seq)
        if a is None:
            return
        end = msg.first_index + msg.count
        gone = {i for i in a.pieces if msg.first_index <= i < end}
        a.pieces -= gone
        header = a.header_pending
        a.header_pending = False
        self._release_asked(nb.peer_id, msg.seq, gone, header)
        if not a.pieces:
            self._finish_assignment(nb, msg.seq)

    def _on_header(self, nb: Neighbour, header: ChunkHeader, now: float) -> bool:
        """Store a header; True if that may change what we ask of whom."""
        self._check_seq(header.seq, "chunk header")
        result = self._store.add_header(header)
        if result is False:
            self._drop(nb, f"forged chunk header for seq {header.seq}", ByeReason.FORGED)
            return True
        seq = header.seq
        nb.last_data_s = now
        nb.announced_s.setdefault(seq, now)
        if self._header_from.get(seq) == nb.peer_id:
            del self._header_from[seq]
        a = nb.assignments.get(seq)
        requested = a is not None and a.header_pending
        if a is not None and requested:
            a.header_pending = False
            nb.progress(a, a.requested_s, now)
            beyond = {i for i in a.pieces if i >= header.piece_count}
            a.pieces -= beyond
            self._release_asked(nb.peer_id, seq, beyond, False)
            if not a.pieces:
                self._finish_assignment(nb, seq)
        chunk = self._store.get(seq)
        if result and chunk is not None:
            self._header_s[seq] = now
            nb.last_useful_s = now
            self._heard(seq)
            self._announce(seq, skip=nb.peer_id)
        # A header pushed ahead of its sender's first have: that have, right behind it, tells
        # what to ask for. Only a header we asked for, or of a chunk others with room offer,
        # changes the plan now.
        if not result:
            return requested  # a header we held already (pushed with a have): nothing new
        return requested or any(
            o is not nb and o.holds(seq) and (o.is_source or self._room(o) > 0)
            for o in self._nbrs.values()
        )

    def _on_piece(self, nb: Neighbour, msg: Piece, size_bytes: int, now: float) -> None:
        seq, index = msg.seq, msg.index
        result = self._store.add_piece(seq, index, msg.count, msg.payload)
        nb.bytes_received += size_bytes
        nb.last_data_s = now
        if result is PieceResult.MISMATCH:
            raise ProtocolError(f"piece {seq}/{index}: count {msg.count} disagrees")
        if result is PieceResult.FORGED:
            self._drop(nb, f"forged piece {seq}/{index}", ByeReason.FORGED)
            return
        a = nb.assignments.get(seq)
        if a is not None and index in a.pieces:
            a.pieces.discard(index)
            nb.progress(a, a.asked_s.get(index, a.requested_s), now)
            nb.strikes = 0
            if not a.pieces and not a.header_pending:
                self._finish_assignment(nb, seq)
        if result is not PieceResult.NEW:
            self.bytes_duplicate += len(msg.payload)
            return
        if nb.is_source:
            self.bytes_from_source += len(msg.payload)
        else:
            self.bytes_from_peers += len(msg.payload)
        nb.meter.received(size_bytes, now)
        nb.last_useful_s = now
        owner = self._inflight.get(seq, {}).pop(index, None)
        if owner is not None and owner != nb.peer_id:
            self._cancel_piece(owner, seq, index)
        for item in self._uploads:
            if item.seq == seq:
                self._ready.add(item.peer_id)
        chunk = self._store.get(seq)
        if chunk is None:
            return
        if chunk.complete:
            self._on_complete(seq)
        else:
            # Piece-level knowledge: neighbours ask us for exactly the pieces we hold.
            self._announce(seq, skip=None)
        self._dirty = True

    def _cancel_piece(self, owner: str, seq: int, index: int) -> None:
        """We got piece index elsewhere: owner need not send it any more."""
        other = self._nbrs.get(owner)
        if other is None:
            return
        a = other.assignments.get(seq)
        if a is None or index not in a.pieces:
            return
        a.pieces.discard(index)
        self._send_control(other, encode_message(Cancel(seq, index, 1)))
        if not a.pieces and not a.header_pending:
            self._finish_assignment(other, seq)

    def _finish_assignment(self, nb: Neighbour, seq: int) -> None:
        a = nb.assignments.pop(seq, None)
        if a is not None:
            self._release_asked(nb.peer_id, seq, a.pieces, a.header_pending)
        if not nb.assignments:
            nb.meter.idle()
        self._dirty = True

    def _release_asked(self, peer_id: str, seq: int, pieces: set[int], header: bool) -> None:
        """Forget that peer_id was asked for these pieces (and header) of seq."""
        asked = self._inflight.get(seq)
        if asked is not None:
            for i in pieces:
                if asked.get(i) == peer_id:
                    del asked[i]
        if header and self._header_from.get(seq) == peer_id:
            del self._header_from[seq]

    def _on_complete(self, seq: int) -> None:
        chunk = self._store.get(seq)
        if chunk is None:
            return
        self._inflight.pop(seq, None)
        self._header_from.pop(seq, None)
        self.complete_after_release_s.append(self._now - chunk.header.release_us / 1e6)
        pieces = tuple(p for p in chunk.pieces if p is not None)
        self._events.append(ChunkComplete(seq, chunk.header, pieces))
        pb = self.playback
        if pb is not None and pb.started and pb.next_seq is not None and seq >= pb.next_seq:
            pb.completed(pb.deadline(seq, chunk.header.start_us / 1e6, self._now), self._now)
        self._announce(seq, skip=None)
        self._dirty = True

    # ---------------------------------------------------------------- serving

    def _slot_items(self) -> list[ServeItem]:
        """The requests we serve now: the most urgent ones (lowest seq, then oldest) that have a
        piece (or the header) ready, at most upload_slots of them.

        Requests waiting for pieces we are still receiving keep their place without holding a
        slot; requests we can never complete (chunk gone or abandoned) get an absent.
        """
        ready: list[ServeItem] = []
        for item in list(self._uploads):
            chunk = self._store.get(item.seq)
            if chunk is None or (
                chunk.abandoned and all(chunk.pieces[i] is None for i in item.pieces)
            ):
                self._unqueue(item)
                self._release(item)
                nb = self._nbrs.get(item.peer_id)
                if nb is not None and (item.pieces or item.header_pending):
                    first = item.pieces[0] if item.pieces else 0
                    count = item.pieces[-1] - first + 1 if item.pieces else ALL_PIECES
                    self._send_control(nb, encode_message(Absent(item.seq, first, count)))
                continue
            if item.header_pending or any(chunk.pieces[i] is not None for i in item.pieces):
                ready.append(item)
        if len(ready) > self.config.upload_slots:
            ready.sort(key=self._serve_key)
            del ready[self.config.upload_slots :]
        return ready

    def _serve_key(self, item: ServeItem) -> tuple[int, int, int]:
        """Serving priority: a piece we hold and never uploaded first (its first forward from
        here doubles its holders: how fast a chunk crosses the swarm), then lowest seq (nearest
        its deadline), then the oldest request. Without the first rule every hop waits behind
        the queue of repairs, and a chunk takes about as long to spread as the lag allows."""
        sent = self._sent_once.get(item.seq, 0)
        chunk = self._store.get(item.seq)
        fresh = chunk is not None and any(
            not sent >> i & 1 and chunk.pieces[i] is not None for i in item.pieces
        )
        return (0 if fresh else 1, item.seq, item.order)

    def _serve(self, item: ServeItem) -> bytes:
        """The next message of a slot item (the header first when it was asked for)."""
        chunk = self._store.get(item.seq)
        assert chunk is not None
        if item.header_pending:
            item.header_pending = False
            if not item.pieces:
                self._unqueue(item)
            return chunk.header.encode()
        for pos, index in enumerate(item.pieces):
            payload = chunk.pieces[index]
            if payload is not None:
                del item.pieces[pos]
                if not item.pieces:
                    self._unqueue(item)
                self._sent_once[item.seq] = self._sent_once.get(item.seq, 0) | 1 << index
                if self.role == Role.SOURCE:
                    nb = self._nbrs.get(item.peer_id)
                    if nb is not None:
                        nb.sent_mask[item.seq] = nb.sent_mask.get(item.seq, 0) | 1 << index
                return encode_message(Piece(item.seq, index, len(chunk.pieces), payload))
        raise AssertionError("a slot item always has a servable piece")

    def _unqueue(self, item: ServeItem) -> None:
        nb = self._nbrs.get(item.peer_id)
        if nb is not None and item in nb.serving:
            nb.serving.remove(item)
        if item in self._uploads:
            self._uploads.remove(item)
            # Another request may take the freed slot: its link has something to send now.
            for other in self._uploads:
                self._ready.add(other.peer_id)

    def _release(self, item: ServeItem, dropped: list[int] | None = None) -> None:
        """Give back the source's per-chunk budget for pieces it will not send after all."""
        if self.role != Role.SOURCE or not item.reserved_bytes:
            return
        chunk = self._store.get(item.seq)
        if chunk is None:
            return
        pieces = item.pieces if dropped is None else dropped
        back = min(item.reserved_bytes, sum(chunk.header.piece_length(i) for i in pieces))
        item.reserved_bytes -= back
        self._source_reserved[item.seq] = self._source_reserved.get(item.seq, 0) - back
        nb = self._nbrs.get(item.peer_id)
        if nb is not None and item.seq in nb.extra_bytes:
            nb.extra_bytes[item.seq] -= back

    # ---------------------------------------------------------------- scheduling

    def _after(self, now: float) -> None:
        """Run after every input: playout, window, scheduling."""
        self._uplink.sample(self.bytes_uploaded, self._upload_backlogged(now), now)
        self._play(now)
        if self._dirty and self.role != Role.SOURCE:
            self._dirty = False
            self._schedule(now)

    def _expected_wait_s(self, nb: Neighbour) -> float:
        return nb.expected_wait_s(self.config.initial_response_s)

    def _timeout_s(self, nb: Neighbour) -> float:
        """No progress on a request to nb for this long times it out."""
        return self.config.request_timeout_s + self._expected_wait_s(nb)

    def _room(self, nb: Neighbour) -> int:
        """How many more pieces we may ask of nb now."""
        cfg = self.config
        return nb.room_pieces(cfg.pipeline_s, cfg.min_inflight_bytes, cfg.piece_size_bytes)

    def _media_start_s(self, seq: int) -> float | None:
        return self._store.media_start_s(seq, self.config.chunk_duration_s)

    def _upload_backlogged(self, now: float) -> bool:
        """Has a request waited in our upload queue for backlog_age_s? (The uplink, not the
        demand, sets the pace then.) The queue keeps arrival order: the first is the oldest."""
        uploads = self._uploads
        return bool(uploads) and now - uploads[0].queued_s >= self.config.backlog_age_s

    def have_interval_s(self) -> float:
        """How often at most a have goes to one neighbour: have_interval_s, or longer on an
        uplink measured narrow (see have_uplink_share). Never for the source: its haves are
        the first news of every chunk."""
        if self.role == Role.SOURCE:
            return self.config.have_interval_s
        return have_interval_for(self.config, len(self._nbrs), self._uplink.capacity_bytes_per_s)

    def source_restarted(self, first_seq: int) -> None:
        """The broadcaster restarted at first_seq (a new session of the same key): the seqs
        between its last session's newest chunk and first_seq never existed."""
        if self.playback is not None:
            newest = self._store.newest_seq
            self.playback.skip_never_released(
                first_seq if newest is None else newest + 1, first_seq
            )

    def _release_s(self, seq: int) -> float | None:
        chunk = self._store.get(seq)
        return None if chunk is None else chunk.header.release_us / 1e6

    def _at_edge(self, seq: int) -> bool:
        """Past the live edge: no header of seq or of any later chunk has arrived."""
        newest = self._store.newest_seq
        return self._store.get(seq) is None and (newest is None or seq > newest)

    def _play(self, now: float) -> None:
        pb = self.playback
        if pb is None or pb.start_seq is None:
            return
        if not pb.started:
            start = self._store.get(pb.start_seq)
            if start is None or not start.complete:
                later = [s for s in self._store.complete_seqs() if s > pb.start_seq]
                if len(later) >= self.config.start_give_up_chunks:
                    self._abandon(pb.start_seq)
                    pb.start_seq = pb.next_seq = pb.start_from_peers = later[0]
                    start = self._store.get(later[0])
            if start is not None and start.complete:
                pb.start_if_ready(
                    now, True, start.header.start_us / 1e6, start.header.release_us / 1e6
                )
        for seq, ok in pb.due(
            now,
            self._media_start_s,
            self._store.is_complete,
            self._may_come,
            self._release_s,
            self._at_edge,
        ):
            chunk = self._store.get(seq)
            if ok and chunk is not None:
                deadline = pb.deadline(seq, chunk.header.start_us / 1e6, now)
                lag_s = deadline - chunk.header.release_us / 1e6
                pb.lags_s.append(lag_s)
                pieces = [p for p in chunk.pieces if p is not None]
                self._events.append(ChunkPlayed(seq, lag_s, b"".join(pieces)))
            else:
                self._events.append(ChunkMissed(seq))
                self._abandon(seq)
            self._dirty = True
        if pb.next_seq is not None:
            floor = pb.next_seq - self.config.keep_behind_chunks
            if floor > self._store.floor_seq:
                # Only seqs we know of: a fresh core's floor (0) may be far below wall-clock seqs.
                known = {c.header.seq for c in self._store} | set(self._inflight)
                for seq in sorted(s for s in known | set(self._header_from) if s < floor):
                    self._abandon(seq)
                self._store.evict_below(floor)
                for table in (self._header_s, self._sent_once):
                    for s in [s for s in table if s < floor]:
                        del table[s]
                for nb in self._nbrs.values():
                    nb.forget_below(floor)

    def _may_come(self, seq: int) -> bool:
        """Worth stalling for: we hold its header or a neighbour announced some of it."""
        return self._store.get(seq) is not None or any(nb.holds(seq) for nb in self._nbrs.values())

    def _abandon(self, seq: int) -> None:
        """Stop fetching seq (played past it); neighbours waiting on its pieces get absent."""
        owners = set(self._inflight.pop(seq, {}).values())
        header_owner = self._header_from.pop(seq, None)
        if header_owner is not None:
            owners.add(header_owner)
        for owner in sorted(owners):  # sorted: a simulation must not depend on hash order
            nb = self._nbrs.get(owner)
            if nb is not None and nb.assignments.pop(seq, None) is not None:
                self._send_control(nb, encode_message(Cancel(seq, 0, ALL_PIECES)))
                if not nb.assignments:
                    nb.meter.idle()
        chunk = self._store.get(seq)
        if chunk is not None and not chunk.complete:
            chunk.abandoned = True
            for item in self._uploads:
                self._ready.add(item.peer_id)

    def _time_out(self, nb: Neighbour, seq: int, now: float) -> None:
        a = nb.assignments.get(seq)
        if a is None:
            return
        self._give_up(nb, seq, now)
        self.timeouts += 1
        if a.strike_on_timeout and nb.last_data_s <= a.last_progress_s:
            # Silent towards us the whole time (no data for any chunk): a stall, not a queue.
            nb.strikes += 1
            if nb.strikes >= self.config.stall_strikes:
                self._drop(nb, f"stalled: {nb.strikes} requests timed out", ByeReason.STALLED)

    def _rescue_slow(self, now: float) -> None:
        """Take urgent pieces away from a holder too slow to deliver them in time.

        A slow trickle is progress, so the timeout never fires; but if what is left of an
        assignment, at the holder's measured rate, would land after the chunk's deadline, it is
        cancelled there (no strike: the holder is serving, only slowly) and asked elsewhere -
        another holder, or the source, which serves urgent chunks.
        """
        pb = self.playback
        if pb is None or pb.start_seq is None:
            return
        piece_bytes = self.config.piece_size_bytes
        for nb in list(self._nbrs.values()):
            rate = nb.meter.rate_bytes_per_s
            if not rate:
                continue
            for seq, a in list(nb.assignments.items()):
                if not a.pieces:
                    continue
                if pb.started:
                    deadline = pb.deadline(seq, self._media_start_s(seq), now)
                else:
                    deadline = now + self.config.target_lag_s
                if deadline - now > self.config.urgent_s:
                    continue
                if now + len(a.pieces) * piece_bytes / rate > deadline:
                    self._give_up(nb, seq, now)
                    self.rescues += 1

    def _give_up(self, nb: Neighbour, seq: int, now: float) -> None:
        """Cancel what is left of our request for seq at nb; do not ask it for seq for a while."""
        a = nb.assignments.pop(seq, None)
        if a is None:
            return
        self._release_asked(nb.peer_id, seq, a.pieces, a.header_pending)
        if not nb.assignments:
            nb.meter.idle()
        for first, count in _runs(sorted(a.pieces)) or [(0, ALL_PIECES)]:
            self._send_control(nb, encode_message(Cancel(seq, first, count)))
        nb.not_from[seq] = now + 2 * self.config.request_timeout_s
        self._dirty = True

    def _schedule(self, now: float) -> None:
        pb = self.playback
        self._replan_at_s = None
        self._work_pending = False
        if pb is None or pb.next_seq is None or self._newest_heard is None:
            return
        self._rescue_slow(now)
        lo = pb.next_seq
        # A lag grown beyond the window would leave the freshest chunks unfetched.
        ahead = self.config.fetch_ahead_chunks + math.ceil(
            max(0.0, pb.lag_added_s) / self.config.chunk_duration_s
        )
        hi = min(self._newest_heard, lo + ahead)
        # Plain tuples, not attribute look-ups, in the loop below: it runs for every seq of the
        # window for every neighbour after almost every message (the simulator's hot spot).
        # Neighbours without room still count for rarity, but cannot be asked: they get no
        # Holder (most of them, in a busy swarm).
        room = {nb.peer_id: self._room(nb) for nb in self._nbrs.values() if nb.uploads}
        uploaders = [
            (
                nb.peer_id,
                nb.is_source,
                nb.complete,
                nb.partial,
                nb.announced_s,
                nb.not_from,
                nb.is_source or room[nb.peer_id] > 0,
            )
            for nb in self._nbrs.values()
            if nb.uploads
        ]
        peers_linked = any(not is_source for _, is_source, *_ in uploaders)
        wants: list[Want] = []
        # The clock alone changes the plan when a chunk turns urgent (the source and earlier
        # holders become askable) or a not_from period ends: _replan_at_s.
        changes_s: list[float] = []
        unplannable = 0
        for seq in range(lo, hi + 1):
            chunk = self._store.get(seq)
            missing: tuple[int, ...] = ()
            missing_mask = 0
            stuck: tuple[tuple[int, str], ...] = ()
            stuck_next_s: float | None = None
            if chunk is not None:
                if chunk.complete:
                    continue
                asked = self._inflight.get(seq, {})
                if asked:
                    stuck, stuck_next_s = self._stuck_pieces(seq, asked, now)
                moving = {i for i, _ in stuck}
                missing = tuple(
                    i
                    for i, p in enumerate(chunk.pieces)
                    if p is None and (i not in asked or i in moving)
                )
                if stuck_next_s is not None:
                    changes_s.append(stuck_next_s)  # (then pieces may move to another holder)
                if not missing:
                    continue
                for i in missing:
                    missing_mask |= 1 << i
            elif seq in self._header_from:
                continue
            mine_s = self._header_s.get(seq)
            deadline = pb.deadline(seq, self._media_start_s(seq), now)
            urgent = deadline - now <= self.config.urgent_s
            holders: list[Holder] = []
            count = 0
            for peer_id, is_source, complete, partial, announced_s, not_from, askable in uploaders:
                if not_from and not_from.get(seq, -1.0) > now:
                    changes_s.append(not_from[seq])
                    continue
                mask = -1 if seq in complete else partial.get(seq, 0)
                announced = None if is_source else announced_s.get(seq)
                earlier = announced is not None and (mine_s is None or announced <= mine_s)
                if mask or earlier:
                    count += 1
                    if askable:
                        holder = Holder(peer_id, mask, earlier, is_source)
                        if may_serve(holder, missing_mask, urgent, peers_linked):
                            holders.append(holder)
            if count and not urgent:
                # (a hair past the crossing, so that float rounding cannot make it not urgent)
                changes_s.append(deadline - self.config.urgent_s + 1e-6)
            if holders:
                wants.append(
                    Want(seq, deadline, missing, chunk is None, tuple(holders), count, stuck)
                )
            elif count:
                unplannable += len(missing) or 1
        if changes_s:
            self._replan_at_s = min(changes_s)
        if not wants:
            self._work_pending = unplannable > 0
            return
        asks = plan_pieces(wants, room, now, self.config.urgent_s, self._rng, peers_linked)
        moved = 0
        for ask in asks:
            moved += self._request(ask, now)
        self.moved += moved
        wanted = sum(len(w.missing) - len(w.stuck) or 1 for w in wants) + unplannable
        self._work_pending = sum(len(a.pieces) for a in asks) - moved < wanted

    def _stuck_pieces(
        self, seq: int, asked: dict[int, str], now: float
    ) -> tuple[tuple[tuple[int, str], ...], float | None]:
        """(piece, neighbour) for pieces of seq asked of a peer that has sent nothing of them
        for move_after_s (they wait in its upload queue behind other requesters' pieces), and
        when the next of the others will be stuck (None: never, as things stand)."""
        stuck: list[tuple[int, str]] = []
        next_s = math.inf
        for owner in sorted(set(asked.values())):  # sorted: no hash order in a simulation
            nb = self._nbrs.get(owner)
            if nb is None or nb.is_source:
                continue
            a = nb.assignments.get(seq)
            if a is None:
                continue
            wait_s = self._expected_wait_s(nb)
            if wait_s >= self.config.move_max_response_s:
                continue
            move_s = self.config.move_after_s + wait_s
            for i in sorted(a.pieces):
                if asked.get(i) == owner:
                    stuck_s = max(a.last_progress_s, a.asked_s.get(i, now)) + move_s
                    if stuck_s <= now:
                        stuck.append((i, owner))
                    elif stuck_s < next_s:
                        next_s = stuck_s
        return tuple(stuck), None if next_s == math.inf else next_s

    def _request(self, ask: Ask, now: float) -> int:
        """Send ask; returns how many of its pieces moved here from another neighbour."""
        nb = self._nbrs[ask.peer_id]
        seq = ask.seq
        moved = 0
        asked_before = self._inflight.get(seq, {})
        for i in ask.pieces:
            owner = asked_before.get(i)
            if owner is not None and owner != nb.peer_id:
                self._cancel_piece(owner, seq, i)
                moved += 1
        want_header = ask.want_header
        for first, count in _runs(list(ask.pieces)):
            self._send_control(nb, encode_message(Request(seq, first, count, want_header)))
            want_header = False
        mask = nb.known_mask(seq)
        holds_all = all(mask >> i & 1 for i in ask.pieces)
        a = nb.assignments.get(seq)
        if a is None:
            a = Assignment(seq, set(), False, now, now, holds_all)
            nb.assignments[seq] = a
        else:
            a.strike_on_timeout = a.strike_on_timeout and holds_all
        a.pieces.update(ask.pieces)
        asked = self._inflight.setdefault(seq, {})
        for i in ask.pieces:
            asked[i] = nb.peer_id
            a.asked_s[i] = now
        if ask.want_header:
            a.header_pending = True
            self._header_from[seq] = nb.peer_id
        nb.meter.busy(now)
        return moved

    # ---------------------------------------------------------------- helpers

    def _send_control(self, nb: Neighbour, data: bytes) -> None:
        nb.control.append(data)
        self._ready.add(nb.peer_id)

    def _send_have(self, nb: Neighbour, seq: int, bits: tuple[bool, ...]) -> None:
        """A have, preceded by the chunk's signed header when nb has shown no sign of it.

        Pushing the header (a few hundred bytes) with the first have saves nb a request round
        trip through our upload queue before it can ask anyone for pieces: on every hop.
        """
        chunk = self._store.get(seq)
        if (
            self.config.push_headers
            and chunk is not None
            and seq not in nb.headers_sent
            and nb.known_mask(seq) == 0
        ):
            nb.headers_sent.add(seq)
            self._send_control(nb, chunk.header.encode())
        self._send_control(nb, encode_message(Have(seq, bits)))

    def _announce(self, seq: int, skip: str | None) -> None:
        """Owe every neighbour (but skip) a have of seq; see _flush_haves for when it goes."""
        for nb in self._nbrs.values():
            if nb.peer_id != skip and (seq not in nb.complete or nb.is_source):
                nb.have_due.add(seq)
                if self._now >= nb.have_next_s:
                    self._flush_haves(nb)

    def _flush_haves(self, nb: Neighbour) -> None:
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
            self._send_have(nb, seq, bits)
            sent = True
        nb.have_due.clear()
        if sent:
            nb.have_next_s = self._now + self.have_interval_s()

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
        self._events.append(DropNeighbour(nb.peer_id, reason, bye))
        self.remove_neighbour(nb.peer_id, self._now)


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


def _by_id(nb: Neighbour) -> str:
    return nb.peer_id


def header_bits(piece_count: int) -> tuple[bool, ...]:
    return (True,) * piece_count


def _mask(bits: tuple[bool, ...]) -> int:
    """A have's bitfield as an int: bit i set = piece i held."""
    mask = 0
    for i, held in enumerate(bits):
        if held:
            mask |= 1 << i
    return mask
