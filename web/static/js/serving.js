// Answering neighbours' requests: the upload queue and its few slots. The JavaScript twin of
// streamer/swarm/serving.py.
//
// Rules: a request is queued, never bounced as busy (requesters limit what they keep in flight
// with us); an absent goes only for what we cannot serve (no chunk, gone, abandoned, or beyond
// the source's copy budget); at most uploadSlots requests are served at a time, a piece we never
// uploaded first, then the lowest seq, then the oldest request; a request whose link is full
// (the driver says so) holds no slot; a neighbour may hold at most maxServeQueue requests.

import { ALL_PIECES, ProtocolError, encodeMessage, pieceRuns } from "./wire.js";
import { hasBit } from "./scheduler.js";

/** Lexicographic comparison of two arrays of numbers (Python's tuple order). */
function compareKeys(a, b) {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

export class Server {
  constructor(ctx, { upload, seeder }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs, outbox: this.outbox } = ctx);
    this.upload = upload;
    this.seeder = seeder;
    /** Requests from all neighbours, oldest first: the one upload queue. */
    this.uploads = [];
    this.order = 0;
    /** seq -> BigInt mask of the pieces we have uploaded at least once (see serveKey). */
    this.sentOnce = new Map();
    /** Bumped by every change of the queue, its items, sentOnce or a link's fullness. */
    this.version = 0;
    /**
     * The slot items and the (store, queue) versions they were worked out at: they are asked
     * for for every piece sent, and a relay with dozens of viewers spent a third of its CPU
     * scanning its queue each time (test bed).
     */
    this.slots = [];
    this.slotsOf = [-1, -1];
  }

  /** Queue the request; absent only for what we cannot serve (no chunk, gone, budget). */
  onRequest(nb, msg, now) {
    if (nb.serving.length >= this.config.maxServeQueue) {
      throw new ProtocolError(`more than ${this.config.maxServeQueue} outstanding requests`);
    }
    const chunk = this.store.get(msg.seq);
    if (!this.upload || chunk === null) {
      this.absent(nb, msg.seq, msg.firstIndex, msg.count);
      return;
    }
    const last = Math.min(msg.firstIndex + msg.count, chunk.pieces.length);
    let indices = [];
    for (let i = msg.firstIndex; i < last; i++) indices.push(i);
    if (chunk.abandoned) indices = indices.filter((i) => chunk.pieces[i] !== null);
    if (indices.length === 0 && !msg.wantHeader) {
      this.absent(nb, msg.seq, msg.firstIndex, msg.count);
      return;
    }
    let reserved = 0;
    if (this.seeder !== null) {
      this.seeder.asked(nb, msg.seq, now);
      const admitted = this.seeder.admit(nb, chunk, indices);
      indices = admitted.served;
      reserved = admitted.reserved;
      for (const [first, count] of pieceRuns(admitted.refused)) {
        this.absent(nb, msg.seq, first, count);
      }
      if (indices.length === 0 && !msg.wantHeader) return;
    }
    this.order += 1;
    const item = {
      peerId: nb.peerId,
      seq: msg.seq,
      pieces: indices,
      headerPending: msg.wantHeader,
      order: this.order,
      reservedBytes: reserved,
      queuedS: now,
    };
    nb.serving.push(item);
    this.uploads.push(item);
    this.version += 1;
    this.outbox.wake(nb.peerId);
  }

  onCancel(nb, msg) {
    this.version += 1;
    const end = msg.firstIndex + msg.count;
    const inRange = (i) => msg.firstIndex <= i && i < end;
    for (const item of [...nb.serving]) {
      if (item.seq !== msg.seq) continue;
      const keep = item.pieces.filter((i) => !inRange(i));
      this.release(item, item.pieces.filter(inRange));
      item.pieces = keep;
      // A header still owed is dropped too: the requester gave up on these pieces.
      if (keep.length === 0) this.unqueue(item);
    }
  }

  /** nb is gone: its requests leave the queue (and give back the source's budget). */
  forget(nb) {
    for (const item of nb.serving) this.release(item);
    this.uploads = this.uploads.filter((item) => item.peerId !== nb.peerId);
    this.version += 1;
  }

  /** Next header or piece for peerId, if one of its requests holds an upload slot. */
  nextData(peerId) {
    for (const item of this.slotItems()) if (item.peerId === peerId) return this.serve(item);
    return null;
  }

  /** Peer ids whose requests hold an upload slot now. */
  uploadPeers() {
    const seen = [];
    for (const item of this.slotItems()) if (!seen.includes(item.peerId)) seen.push(item.peerId);
    return seen;
  }

  /**
   * Has a request waited in our upload queue for backlogAgeS? (The uplink, not the demand, sets
   * the pace then.) The queue keeps arrival order: the first is the oldest.
   */
  backlogged(now) {
    const first = this.uploads[0];
    return first !== undefined && now - first.queuedS >= this.config.backlogAgeS;
  }

  /** A piece of seq arrived: requests waiting for it may be served now. */
  wakeFor(seq) {
    for (const item of this.uploads) if (item.seq === seq) this.outbox.wake(item.peerId);
  }

  /**
   * nb's link takes no more data for now (full) or does again. A full link's requests keep their
   * place without holding a slot: a link held back by its own congestion window (a lossy path)
   * must not leave the uplink idle while other requests wait.
   */
  setLinkFull(nb, full) {
    if (nb.linkFull === full) return;
    nb.linkFull = full;
    this.version += 1;
    if (full) {
      // Its slots pass to the next requests: their links have something to send now.
      for (const item of this.uploads) if (item.peerId !== nb.peerId) this.outbox.wake(item.peerId);
    } else if (nb.serving.length) {
      this.outbox.wake(nb.peerId);
    }
  }

  /** Something changed for every queued request (a chunk abandoned: some get absents). */
  wakeAll() {
    for (const item of this.uploads) this.outbox.wake(item.peerId);
  }

  /**
   * Does a request wait in our upload queue for a piece (or header) we hold? (One waiting for
   * pieces still coming in says nothing of the uplink.)
   */
  pressed() {
    return this.uploads.some((item) => servable(item, this.store.get(item.seq)));
  }

  /**
   * We take no more requests (each gets an absent); those queued are still served: a first copy
   * we hold may be the only one yet.
   */
  stop() {
    this.upload = false;
  }

  evictBelow(floorSeq) {
    for (const seq of [...this.sentOnce.keys()]) if (seq < floorSeq) this.sentOnce.delete(seq);
    this.version += 1;
  }

  absent(nb, seq, firstIndex, count) {
    this.outbox.send(nb, encodeMessage({ type: "absent", seq, firstIndex, count }));
  }

  /**
   * The requests we serve now: the most urgent ones (lowest seq, then oldest) that have a piece
   * (or the header) ready and a link that is not full, at most uploadSlots of them.
   *
   * Requests waiting for pieces we are still receiving, or for their full link, keep their place
   * without holding a slot; requests we can never complete (chunk gone or abandoned) get an
   * absent. Worked out again only when the store or the queue changed.
   */
  slotItems() {
    if (this.slotsOf[0] === this.store.version && this.slotsOf[1] === this.version) {
      return this.slots;
    }
    let ready = [];
    for (const item of [...this.uploads]) {
      const chunk = this.store.get(item.seq);
      if (
        chunk === null ||
        (chunk.abandoned && item.pieces.every((i) => chunk.pieces[i] === null))
      ) {
        this.unqueue(item);
        this.release(item);
        const nb = this.nbrs.get(item.peerId);
        if (nb !== undefined && (item.pieces.length || item.headerPending)) {
          const first = item.pieces.length ? item.pieces[0] : 0;
          const count = item.pieces.length
            ? item.pieces[item.pieces.length - 1] - first + 1
            : ALL_PIECES;
          this.absent(nb, item.seq, first, count);
        }
        continue;
      }
      if (this.nbrs.get(item.peerId)?.linkFull) continue;
      if (servable(item, chunk)) {
        ready.push(item);
      }
    }
    if (ready.length > this.config.uploadSlots) {
      ready.sort((a, b) => compareKeys(this.serveKey(a), this.serveKey(b)));
      ready = ready.slice(0, this.config.uploadSlots);
    }
    this.slots = ready;
    this.slotsOf = [this.store.version, this.version];
    return ready;
  }

  /**
   * Serving priority: a piece we hold and never uploaded first (its first forward from here
   * doubles its holders: how fast a chunk crosses the swarm), then lowest seq (nearest its
   * deadline), then the oldest request. Without the first rule every hop waits behind the queue
   * of repairs, and a chunk takes about as long to spread as the lag allows.
   */
  serveKey(item) {
    const sent = this.sentOnce.get(item.seq) ?? 0n;
    const chunk = this.store.get(item.seq);
    const fresh =
      chunk !== null && item.pieces.some((i) => !hasBit(sent, i) && chunk.pieces[i] !== null);
    return [fresh ? 0 : 1, item.seq, item.order];
  }

  /** The next message of a slot item (the header first when it was asked for). */
  serve(item) {
    const chunk = this.store.get(item.seq);
    this.version += 1;
    if (item.headerPending) {
      item.headerPending = false;
      if (item.pieces.length === 0) this.unqueue(item);
      return encodeMessage(chunk.header);
    }
    for (let pos = 0; pos < item.pieces.length; pos++) {
      const index = item.pieces[pos];
      const payload = chunk.pieces[index];
      if (payload !== null) {
        item.pieces.splice(pos, 1);
        if (item.pieces.length === 0) this.unqueue(item);
        const bit = 1n << BigInt(index);
        this.sentOnce.set(item.seq, (this.sentOnce.get(item.seq) ?? 0n) | bit);
        if (this.seeder !== null) {
          const nb = this.nbrs.get(item.peerId);
          if (nb !== undefined) this.seeder.served(nb, item.seq, index);
        }
        const count = chunk.pieces.length;
        return encodeMessage({ type: "piece", seq: item.seq, index, count, payload });
      }
    }
    throw new Error("a slot item always has a servable piece");
  }

  unqueue(item) {
    const nb = this.nbrs.get(item.peerId);
    if (nb !== undefined) {
      const at = nb.serving.indexOf(item);
      if (at >= 0) nb.serving.splice(at, 1);
    }
    const at = this.uploads.indexOf(item);
    if (at >= 0) {
      this.uploads.splice(at, 1);
      this.version += 1;
      // Another request may take the freed slot: its link has something to send now.
      for (const other of this.uploads) this.outbox.wake(other.peerId);
    }
  }

  release(item, dropped = null) {
    if (this.seeder !== null) this.seeder.release(item, dropped);
  }
}

/** Do we hold something item asks for now (chunk: its chunk): its header, or a piece? */
function servable(item, chunk) {
  if (chunk === null) return false;
  return item.headerPending || item.pieces.some((i) => chunk.pieces[i] !== null);
}
