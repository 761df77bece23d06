"""Answering neighbours' requests: the upload queue and its few slots.

Rules: a request is queued, never bounced as busy (requesters limit what they keep in flight
with us); an absent goes only for what we cannot serve (no chunk, gone, abandoned, or beyond the
source's copy budget); at most upload_slots requests are served at a time, a piece we never
uploaded first, then the lowest seq, then the oldest request; a request whose link is full (the
driver says so) holds no slot; a neighbour may hold at most max_serve_queue requests.
"""

from __future__ import annotations

import heapq

from streamer.protocol import (
    ALL_PIECES,
    Absent,
    Cancel,
    Piece,
    ProtocolError,
    Request,
    encode_message,
    piece_runs,
)
from streamer.swarm.chunks import ChunkBuffer
from streamer.swarm.context import PeerContext
from streamer.swarm.neighbours import Neighbour, ServeItem, drop_seqs_below
from streamer.swarm.seeding import Seeder


class Server:
    """The upload queue of one peer: requests from all neighbours, oldest first."""

    def __init__(
        self,
        ctx: PeerContext,
        *,
        upload: bool,
        seeder: Seeder | None,
    ) -> None:
        self._config, self._store = ctx.config, ctx.store
        self._nbrs, self._outbox = ctx.nbrs, ctx.outbox
        self._upload = upload
        self._seeder = seeder
        self._uploads: list[ServeItem] = []
        """Requests from all neighbours, oldest first (the upload queue)."""
        self._order = 0
        self._sent_once: dict[int, int] = {}
        """seq -> bitmask of the pieces we have uploaded at least once (see _serve_key)."""
        self._version = 0
        """Bumped by every change of the queue, its items, _sent_once or a link's fullness."""
        self._slots: list[ServeItem] = []
        self._slots_of: tuple[int, int] = (-1, -1)
        """The (store, queue) versions _slots was worked out at: a relay asks for its slot items
        for every piece it sends, and scanning dozens of viewers' requests each time was a
        third of its CPU on the test bed."""

    def on_request(self, nb: Neighbour, msg: Request, now: float) -> None:
        """Queue the request; absent only for what we cannot serve (no chunk, gone, budget)."""
        if len(nb.serving) >= self._config.max_serve_queue:
            raise ProtocolError(f"more than {self._config.max_serve_queue} outstanding requests")
        chunk = self._store.get(msg.seq)
        if not self._upload or chunk is None:
            self._absent(nb, msg.seq, msg.first_index, msg.count)
            return
        last = min(msg.first_index + msg.count, len(chunk.pieces))
        indices = list(range(msg.first_index, last))
        if chunk.abandoned:
            indices = [i for i in indices if chunk.pieces[i] is not None]
        if not indices and not msg.want_header:
            self._absent(nb, msg.seq, msg.first_index, msg.count)
            return
        reserved = 0
        if self._seeder is not None:
            self._seeder.asked(nb, msg.seq, now)
            indices, refused, reserved = self._seeder.admit(nb, chunk, indices)
            for first, count in piece_runs(refused):
                self._absent(nb, msg.seq, first, count)
            if not indices and not msg.want_header:
                return
        self._order += 1
        item = ServeItem(nb.peer_id, msg.seq, indices, msg.want_header, self._order, reserved, now)
        nb.serving.append(item)
        self._uploads.append(item)
        self._version += 1
        self._outbox.wake(nb.peer_id)

    def stop(self) -> None:
        """We take no more requests (each gets an absent); those queued are still served: a
        first copy we hold may be the only one yet."""
        self._upload = False

    def on_cancel(self, nb: Neighbour, msg: Cancel) -> None:
        self._version += 1
        end = msg.first_index + msg.count
        for item in list(nb.serving):
            if item.seq != msg.seq:
                continue
            keep = [i for i in item.pieces if not msg.first_index <= i < end]
            self._release(item, dropped=[i for i in item.pieces if msg.first_index <= i < end])
            item.set_pieces(keep)
            if not keep:
                # A header still owed is dropped too: the requester gave up on these pieces.
                self._unqueue(item)

    def forget(self, nb: Neighbour) -> None:
        """nb is gone: its requests leave the queue (and give back the source's budget)."""
        for item in nb.serving:
            self._release(item)
        self._uploads = [item for item in self._uploads if item.peer_id != nb.peer_id]
        self._version += 1

    def next_data(self, peer_id: str) -> bytes | None:
        """Next header or piece for peer_id, if one of its requests holds an upload slot."""
        for item in self._slot_items():
            if item.peer_id == peer_id:
                return self._serve(item)
        return None

    def upload_peers(self) -> list[str]:
        """Peer ids whose requests hold an upload slot now."""
        seen: list[str] = []
        for item in self._slot_items():
            if item.peer_id not in seen:
                seen.append(item.peer_id)
        return seen

    def backlogged(self, now: float) -> bool:
        """Has a request waited in our upload queue for backlog_age_s? (The uplink, not the
        demand, sets the pace then.) The queue keeps arrival order: the first is the oldest."""
        uploads = self._uploads
        return bool(uploads) and now - uploads[0].queued_s >= self._config.backlog_age_s

    def pressed(self) -> bool:
        """Does a request wait in our upload queue for a piece (or header) we hold? (One waiting
        for pieces still coming in says nothing of the uplink.)"""
        return any(_servable(item, self._store.get(item.seq)) for item in self._uploads)

    def wake_for(self, seq: int) -> None:
        """A piece of seq arrived: requests waiting for it may be served now."""
        for item in self._uploads:
            if item.seq == seq:
                self._outbox.wake(item.peer_id)

    def set_link_full(self, nb: Neighbour, full: bool) -> None:
        """nb's link takes no more data for now (full) or does again. A full link's requests keep
        their place without holding a slot: a link held back by its own congestion window (a
        lossy path) must not leave the uplink idle while other requests wait."""
        if nb.link_full == full:
            return
        nb.link_full = full
        self._version += 1
        if full:
            # Its slots pass to the next requests: their links have something to send now.
            for item in self._uploads:
                if item.peer_id != nb.peer_id:
                    self._outbox.wake(item.peer_id)
        elif nb.serving:
            self._outbox.wake(nb.peer_id)

    def wake_all(self) -> None:
        """Something changed for every queued request (a chunk abandoned: some get absents)."""
        for item in self._uploads:
            self._outbox.wake(item.peer_id)

    def evict_below(self, floor_seq: int) -> None:
        drop_seqs_below(floor_seq, self._sent_once)
        self._version += 1

    def _absent(self, nb: Neighbour, seq: int, first: int, count: int) -> None:
        self._outbox.send(nb, encode_message(Absent(seq, first, count)))

    def _slot_items(self) -> list[ServeItem]:
        """The requests we serve now: the most urgent ones (lowest seq, then oldest) that have a
        piece (or the header) ready and a link that is not full, at most upload_slots of them.

        Requests waiting for pieces we are still receiving, or for their full link, keep their
        place without holding a slot; requests we can never complete (chunk gone or abandoned)
        get an absent. Worked out again only when the store or the queue changed.
        """
        if self._slots_of == (self._store.version, self._version):
            return self._slots
        ready: list[ServeItem] = []
        for item in list(self._uploads):
            chunk = self._store.get(item.seq)
            if chunk is None or (chunk.abandoned and not chunk.held_mask & item.mask):
                self._unqueue(item)
                self._release(item)
                nb = self._nbrs.get(item.peer_id)
                if nb is not None and (item.pieces or item.header_pending):
                    first = item.pieces[0] if item.pieces else 0
                    count = item.pieces[-1] - first + 1 if item.pieces else ALL_PIECES
                    self._absent(nb, item.seq, first, count)
                continue
            nb = self._nbrs.get(item.peer_id)
            if nb is not None and nb.link_full:
                continue
            if _servable(item, chunk):
                ready.append(item)
        if len(ready) > self._config.upload_slots:
            ready = heapq.nsmallest(self._config.upload_slots, ready, key=self._serve_key)
        self._slots, self._slots_of = ready, (self._store.version, self._version)
        return ready

    def _serve_key(self, item: ServeItem) -> tuple[int, int, int]:
        """Serving priority: a piece we hold and never uploaded first (its first forward from
        here doubles its holders: how fast a chunk crosses the swarm), then lowest seq (nearest
        its deadline), then the oldest request. Without the first rule every hop waits behind
        the queue of repairs, and a chunk takes about as long to spread as the lag allows."""
        sent = self._sent_once.get(item.seq, 0)
        chunk = self._store.get(item.seq)
        fresh = chunk is not None and item.mask & chunk.held_mask & ~sent != 0
        return (0 if fresh else 1, item.seq, item.order)

    def _serve(self, item: ServeItem) -> bytes:
        """The next message of a slot item (the header first when it was asked for)."""
        chunk = self._store.get(item.seq)
        assert chunk is not None
        self._version += 1
        if item.header_pending:
            item.header_pending = False
            if not item.pieces:
                self._unqueue(item)
            return chunk.header.encode()
        for pos, index in enumerate(item.pieces):
            payload = chunk.pieces[index]
            if payload is not None:
                item.take(pos)
                if not item.pieces:
                    self._unqueue(item)
                self._sent_once[item.seq] = self._sent_once.get(item.seq, 0) | 1 << index
                if self._seeder is not None:
                    nb = self._nbrs.get(item.peer_id)
                    if nb is not None:
                        self._seeder.served(nb, item.seq, index)
                return encode_message(Piece(item.seq, index, len(chunk.pieces), payload))
        raise AssertionError("a slot item always has a servable piece")

    def _unqueue(self, item: ServeItem) -> None:
        nb = self._nbrs.get(item.peer_id)
        if nb is not None and item in nb.serving:
            nb.serving.remove(item)
        if item in self._uploads:
            self._uploads.remove(item)
            self._version += 1
            # Another request may take the freed slot: its link has something to send now.
            for other in self._uploads:
                self._outbox.wake(other.peer_id)

    def _release(self, item: ServeItem, dropped: list[int] | None = None) -> None:
        if self._seeder is not None:
            self._seeder.release(item, dropped)


def _servable(item: ServeItem, chunk: ChunkBuffer | None) -> bool:
    """Do we hold something item asks for now (chunk: its chunk): its header, or a piece?"""
    return chunk is not None and (item.header_pending or chunk.held_mask & item.mask != 0)
