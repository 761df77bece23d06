// Fetching: what to ask of whom, and what to do when an answer is late, slow or never comes.
// The JavaScript twin of streamer/swarm/fetching.py.
//
// Rules: a missing piece is asked of one neighbour at a time (inflight), and of another only when
// that one times out, is too slow for the deadline (rescue), sent nothing of it for moveAfterS (a
// move), or answered absent (one that timed out or was rescued from is asked again only as a last
// resort, for an urgent chunk); a neighbour gets no more requests than its room (pipelineS of its
// measured rate); a request silent towards us for requestTimeoutS plus its neighbour's usual wait
// times out, and stallStrikes such timeouts drop it; the plan (scheduler.js) is redone only when
// an input or the clock may change it (dirty, replanAtS, workPending).

import { ALL_PIECES, ByeReason, ProtocolError, encodeMessage, pieceRuns } from "./wire.js";
import { PieceResult } from "./chunkstore.js";
import { Planner } from "./planning.js";
import { hasBit, planPieces } from "./scheduler.js";

const byNumber = (a, b) => a - b;

export class Fetcher {
  constructor(ctx, { playout, checks, rng }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs, outbox: this.outbox } = ctx);
    this.playout = playout;
    this.checks = checks;
    this.rng = rng;
    this.planner = new Planner(ctx, { playout, checks });
    /** seq -> Map(piece index -> the neighbour we asked for it): one at a time per piece. */
    this.inflight = new Map();
    /** seq -> the neighbour we asked for its header (we hold no verified header yet). */
    this.headerFrom = new Map();
    /** seq -> when we verified its header: neighbours that announced it before are "earlier". */
    this.headerS = new Map();
    this.dirty = true;
    /**
     * When the plan may change by the clock alone (a chunk turning urgent, a notFrom period
     * ending): a timer then, unless input replans first.
     */
    this.replanAtS = null;
    /**
     * The last plan left wanted pieces unasked: every timer replans (room frees up with inputs
     * that are not all worth a replan of their own).
     */
    this.workPending = false;
    this.bytesFromSource = 0;
    this.bytesFromPeers = 0;
    this.bytesDuplicate = 0;
    this.timeouts = 0;
    /** Urgent requests taken from a holder too slow to meet the deadline. */
    this.rescues = 0;
    /** Pieces asked of another holder after sitting unsent at the first (moveAfterS). */
    this.moved = 0;
  }

  // ---------------------------------------------------------------- measures

  expectedWaitS(nb) {
    return nb.expectedWaitS(this.config.initialResponseS);
  }

  /** No progress on a request to nb for this long times it out. */
  timeoutS(nb) {
    return this.config.requestTimeoutS + this.expectedWaitS(nb);
  }

  /** How many more pieces we may ask of nb now. */
  room(nb) {
    const { pipelineS, minInflightBytes, pieceSizeBytes } = this.config;
    return nb.roomPieces(pipelineS, minInflightBytes, pieceSizeBytes);
  }

  // ---------------------------------------------------------------- the plan

  /** An input changed what we may ask of whom: plan again after it. */
  replan() {
    this.dirty = true;
  }

  /**
   * A timer: plan again if work was left pending or the clock alone changes the plan. Most
   * timers are have flushes and playout deadlines: nothing to replan.
   */
  replanByClock(now) {
    if (this.workPending || (this.replanAtS !== null && now >= this.replanAtS)) this.dirty = true;
  }

  /** Plan and send requests if anything changed since the last plan. */
  run(now) {
    if (this.dirty) {
      this.dirty = false;
      this.schedule(now);
    }
  }

  /** The next request timeout or clock-driven replan (null: none). */
  nextTimerS() {
    let soonest = null;
    const earlier = (t) => {
      if (soonest === null || t < soonest) soonest = t;
    };
    for (const nb of this.nbrs.values()) {
      if (nb.assignments.size === 0) continue;
      const timeoutS = this.timeoutS(nb);
      for (const a of nb.assignments.values()) earlier(a.lastProgressS + timeoutS);
    }
    if (this.replanAtS !== null) earlier(this.replanAtS);
    return soonest;
  }

  // ---------------------------------------------------------------- answers

  /**
   * Did a have (known mask before -> after) offer something we need and nobody is fetching for
   * us yet (a header, or a missing piece)? Only then is it worth rescheduling.
   */
  wantsNews(seq, before, after) {
    if (after === before && before !== 0n) return false;
    const chunk = this.store.get(seq);
    if (chunk === null) return !this.headerFrom.has(seq) && !this.checks.has(seq);
    if (chunk.complete || chunk.abandoned) return false;
    const asked = this.inflight.get(seq);
    const fresh = before !== -1n ? after & ~before : 0n;
    return chunk
      .missing()
      .some((i) => (after === -1n || hasBit(fresh, i)) && !(asked?.has(i) ?? false));
  }

  /** "Not from me": forget what we asked it for in that range, ask others for a while. */
  onAbsent(nb, msg, now) {
    nb.notFrom.set(msg.seq, now + this.config.busyRetryS);
    const a = nb.assignments.get(msg.seq);
    if (a === undefined) return;
    const end = msg.firstIndex + msg.count;
    const gone = new Set([...a.pieces].filter((i) => msg.firstIndex <= i && i < end));
    for (const i of gone) a.pieces.delete(i);
    const header = a.headerPending;
    a.headerPending = false;
    this.releaseAsked(nb.peerId, msg.seq, gone, header);
    if (a.pieces.size === 0) this.finishAssignment(nb, msg.seq);
  }

  /**
   * A verified header came from nb (isNew: it is new to our store). Returns {fresh: announce it,
   * replan: the plan may change (a header we asked for, or a chunk others with room offer)}.
   */
  headerAccepted(nb, header, isNew, now) {
    const seq = header.seq;
    if (!nb.announcedS.has(seq)) nb.announcedS.set(seq, now);
    if (this.headerFrom.get(seq) === nb.peerId) this.headerFrom.delete(seq);
    const a = nb.assignments.get(seq);
    const requested = a !== undefined && a.headerPending;
    if (requested) {
      a.headerPending = false;
      nb.progress(a, a.requestedS, now);
      const count = header.pieceHashes.length;
      const beyond = new Set([...a.pieces].filter((i) => i >= count));
      for (const i of beyond) a.pieces.delete(i);
      this.releaseAsked(nb.peerId, seq, beyond, false);
      if (a.pieces.size === 0) this.finishAssignment(nb, seq);
    }
    if (!isNew) return { fresh: false, replan: requested };
    const fresh = this.store.get(seq) !== null;
    if (fresh) {
      this.headerS.set(seq, now);
      nb.lastUsefulS = now;
    }
    // A header pushed ahead of its sender's first have: that have, right behind it, tells what
    // to ask for. Only a header we asked for, or of a chunk others with room offer, changes the
    // plan now.
    if (requested) return { fresh, replan: true };
    for (const o of this.nbrs.values()) {
      if (o !== nb && o.holds(seq) && (o.isSource || this.room(o) > 0)) {
        return { fresh, replan: true };
      }
    }
    return { fresh, replan: false };
  }

  /**
   * Store a piece and settle what we asked for it. Returns its PieceResult, "held" when it waits
   * for its chunk's header check (verifying.js), or null when nb was dropped for it. replay: a
   * held piece fed in after its header was verified.
   */
  onPiece(nb, msg, sizeBytes, now, replay = false) {
    const { seq, index } = msg;
    if (!replay) nb.lastDataS = now;
    if (!replay && this.store.get(seq) === null && this.checks.hold(nb, msg, sizeBytes)) {
      nb.bytesReceived += sizeBytes;
      const a = nb.assignments.get(seq);
      if (a !== undefined && a.pieces.has(index)) {
        nb.progress(a, a.askedS.get(index) ?? a.requestedS, now); // progress, unchecked
      }
      return "held";
    }
    const result = this.store.addPiece(seq, index, msg.count, msg.payload);
    if (!replay) nb.bytesReceived += sizeBytes;
    if (result === PieceResult.MISMATCH) {
      throw new ProtocolError(`piece ${seq}/${index}: count ${msg.count} disagrees`);
    }
    if (result === PieceResult.FORGED) {
      this.outbox.drop(nb, `forged piece ${seq}/${index}`, ByeReason.FORGED);
      return null;
    }
    if (result === PieceResult.NO_HEADER) {
      // Before its header and not held (not asked of nb, or no room): not counted as come.
      this.bytesDuplicate += msg.payload.length;
      return result;
    }
    // Metered before the assignment is settled: the last piece of a request ends the meter's
    // busy period, and counted after that it would not count at all.
    if (result === PieceResult.NEW) nb.meter.received(sizeBytes, now);
    const a = nb.assignments.get(seq);
    if (a !== undefined && a.pieces.has(index)) {
      a.pieces.delete(index);
      nb.progress(a, a.askedS.get(index) ?? a.requestedS, now);
      nb.strikes = 0;
      if (a.pieces.size === 0 && !a.headerPending) this.finishAssignment(nb, seq);
    }
    if (result !== PieceResult.NEW) {
      this.bytesDuplicate += msg.payload.length;
      return result;
    }
    if (nb.isSource) this.bytesFromSource += msg.payload.length;
    else this.bytesFromPeers += msg.payload.length;
    nb.lastUsefulS = now;
    const asked = this.inflight.get(seq);
    const owner = asked?.get(index);
    if (owner !== undefined) {
      asked.delete(index);
      if (owner !== nb.peerId) this.cancelPiece(owner, seq, index);
    }
    return result;
  }

  /** seq is complete here: nothing of it is in flight any more. */
  completed(seq) {
    this.inflight.delete(seq);
    this.headerFrom.delete(seq);
    this.dirty = true;
  }

  /** nb is gone: what we asked of it goes elsewhere. */
  forget(nb) {
    for (const a of nb.assignments.values()) {
      this.releaseAsked(nb.peerId, a.seq, a.pieces, a.headerPending);
    }
    this.dirty = true;
  }

  // ---------------------------------------------------------------- late answers

  /** Give up requests that made no progress for their neighbour's timeout. */
  timeOuts(now) {
    for (const nb of [...this.nbrs.values()]) {
      const timeoutS = this.timeoutS(nb);
      for (const [seq, a] of [...nb.assignments]) {
        const dueS = a.lastProgressS + timeoutS;
        if (this.nbrs.has(nb.peerId) && now >= dueS) this.timeOut(nb, seq, now);
      }
    }
  }

  /**
   * Take urgent pieces away from a holder too slow to deliver them in time.
   *
   * A slow trickle is progress, so the timeout never fires; but if what is left of an
   * assignment, at the holder's measured rate, would land after the chunk's deadline, it is
   * cancelled there (no strike: the holder is serving, only slowly) and asked elsewhere - another
   * holder, or the source, which serves urgent chunks. Only when another neighbour we may ask
   * holds some of it (or announced it): otherwise the pieces would be asked of the same holder
   * again at once, as a last resort (planning.js), a round trip lost.
   */
  rescueSlow(now) {
    const pb = this.playout.playback;
    if (pb === null || pb.startSeq === null) return;
    const pieceBytes = this.config.pieceSizeBytes;
    for (const nb of [...this.nbrs.values()]) {
      const rate = nb.meter.rateBytesPerS;
      if (!rate) continue;
      for (const [seq, a] of [...nb.assignments]) {
        if (a.pieces.size === 0) continue;
        const deadline = pb.started
          ? this.playout.deadlineS(seq, now)
          : now + this.config.targetLagS;
        if (deadline - now > this.config.urgentS) continue;
        if (now + (a.pieces.size * pieceBytes) / rate <= deadline) continue;
        if (this.heldElsewhere(nb, seq, now)) {
          this.giveUp(nb, seq, now);
          this.rescues += 1;
        }
      }
    }
  }

  /**
   * Whether a neighbour other than nb uploads, holds some of seq (or announced it) and may be
   * asked for it now.
   */
  heldElsewhere(nb, seq, now) {
    for (const o of this.nbrs.values()) {
      if (o === nb || !o.uploads || !(o.holds(seq) || o.announcedS.has(seq))) continue;
      if (!((o.notFrom.get(seq) ?? -1) > now) && !((o.gaveUp.get(seq) ?? -1) > now)) return true;
    }
    return false;
  }

  /**
   * Stop fetching seq (played past it). True when an incomplete chunk of it was held (requests
   * for it may now get absents).
   */
  abandon(seq) {
    const owners = new Set(this.inflight.get(seq)?.values() ?? []);
    this.inflight.delete(seq);
    const headerOwner = this.headerFrom.get(seq);
    this.headerFrom.delete(seq);
    if (headerOwner !== undefined) owners.add(headerOwner);
    for (const owner of [...owners].sort()) {
      const nb = this.nbrs.get(owner);
      if (nb !== undefined && nb.assignments.delete(seq)) {
        const cancel = { type: "cancel", seq, firstIndex: 0, count: ALL_PIECES };
        this.outbox.send(nb, encodeMessage(cancel));
        if (nb.assignments.size === 0) nb.meter.idle();
      }
    }
    const chunk = this.store.get(seq);
    if (chunk !== null && !chunk.complete) {
      this.store.abandon(chunk);
      return true;
    }
    return false;
  }

  /** Seqs below floorSeq we hold or fetch, ascending (to abandon before evicting). */
  seqsBelow(floorSeq) {
    const known = new Set(this.inflight.keys());
    for (const chunk of this.store) known.add(chunk.header.seq);
    for (const seq of this.headerFrom.keys()) known.add(seq);
    return [...known].filter((s) => s < floorSeq).sort(byNumber);
  }

  evictBelow(floorSeq) {
    for (const seq of [...this.headerS.keys()]) if (seq < floorSeq) this.headerS.delete(seq);
  }

  /**
   * No progress on what we asked nb for seq: cancel it, ask others. A strike only when nb held
   * what we asked for and sent us nothing at all meanwhile (silent, not merely busy serving a
   * queue: with tight upload, queue waits exceed the timeout).
   */
  timeOut(nb, seq, now) {
    const a = nb.assignments.get(seq);
    if (a === undefined) return;
    this.giveUp(nb, seq, now);
    this.timeouts += 1;
    if (a.strikeOnTimeout && nb.lastDataS <= a.lastProgressS) {
      nb.strikes += 1;
      if (nb.strikes >= this.config.stallStrikes) {
        this.outbox.drop(nb, `stalled: ${nb.strikes} requests timed out`, ByeReason.STALLED);
      }
    }
  }

  /** Cancel what is left of our request for seq at nb; do not ask it for seq for a while. */
  giveUp(nb, seq, now) {
    const a = nb.assignments.get(seq);
    if (a === undefined) return;
    nb.assignments.delete(seq);
    this.releaseAsked(nb.peerId, seq, a.pieces, a.headerPending);
    if (nb.assignments.size === 0) nb.meter.idle();
    const runs = pieceRuns([...a.pieces].sort(byNumber));
    for (const [first, count] of runs.length ? runs : [[0, ALL_PIECES]]) {
      this.outbox.send(nb, encodeMessage({ type: "cancel", seq, firstIndex: first, count }));
    }
    nb.gaveUp.set(seq, now + 2 * this.config.requestTimeoutS);
    this.dirty = true;
  }

  /** We got piece index elsewhere: owner need not send it any more. */
  cancelPiece(owner, seq, index) {
    const other = this.nbrs.get(owner);
    if (other === undefined) return;
    const a = other.assignments.get(seq);
    if (a === undefined || !a.pieces.has(index)) return;
    a.pieces.delete(index);
    this.outbox.send(other, encodeMessage({ type: "cancel", seq, firstIndex: index, count: 1 }));
    if (a.pieces.size === 0 && !a.headerPending) this.finishAssignment(other, seq);
  }

  finishAssignment(nb, seq) {
    const a = nb.assignments.get(seq);
    if (a !== undefined) {
      nb.assignments.delete(seq);
      this.releaseAsked(nb.peerId, seq, a.pieces, a.headerPending);
    }
    if (nb.assignments.size === 0) nb.meter.idle();
    this.dirty = true;
  }

  /** Forget that peerId was asked for these pieces (and header) of seq. */
  releaseAsked(peerId, seq, pieces, header) {
    const asked = this.inflight.get(seq);
    if (asked !== undefined) {
      for (const i of pieces) if (asked.get(i) === peerId) asked.delete(i);
    }
    if (header && this.headerFrom.get(seq) === peerId) this.headerFrom.delete(seq);
  }

  // ---------------------------------------------------------------- planning

  schedule(now) {
    const pb = this.playout.playback;
    this.replanAtS = null;
    this.workPending = false;
    if (pb === null || pb.nextSeq === null || this.playout.newestHeard === null) return;
    this.rescueSlow(now);
    // Neighbours without room still count for rarity, but cannot be asked.
    const room = new Map();
    for (const nb of this.nbrs.values()) if (nb.uploads) room.set(nb.peerId, this.room(nb));
    const window = this.planner.survey(now, this.inflight, this.headerFrom, this.headerS, room);
    this.replanAtS = window.replanAtS;
    const wants = window.wants;
    if (wants.length === 0) {
      this.workPending = window.unplannable > 0;
      return;
    }
    const { urgentS } = this.config;
    const asks = planPieces(wants, room, now, urgentS, this.rng, window.peersLinked);
    let moved = 0;
    let asked = 0;
    for (const ask of asks) {
      moved += this.request(ask, now);
      asked += ask.pieces.length;
    }
    this.moved += moved;
    let wanted = window.unplannable;
    for (const w of wants) wanted += w.missing.length - w.stuck.length || 1;
    this.workPending = asked - moved < wanted;
  }

  /** Send ask; returns how many of its pieces moved here from another neighbour. */
  request(ask, now) {
    const nb = this.nbrs.get(ask.peerId);
    const seq = ask.seq;
    let moved = 0;
    const askedBefore = this.inflight.get(seq);
    for (const i of ask.pieces) {
      const owner = askedBefore?.get(i);
      if (owner !== undefined && owner !== nb.peerId) {
        this.cancelPiece(owner, seq, i);
        moved += 1;
      }
    }
    let wantHeader = ask.wantHeader;
    for (const [first, count] of pieceRuns(ask.pieces)) {
      this.outbox.send(
        nb,
        encodeMessage({ type: "request", seq, firstIndex: first, count, wantHeader }),
      );
      wantHeader = false;
    }
    const mask = nb.knownMask(seq);
    const holdsAll = ask.pieces.every((i) => hasBit(mask, i));
    let a = nb.assignments.get(seq);
    if (a === undefined) {
      a = {
        seq,
        pieces: new Set(),
        headerPending: false,
        requestedS: now,
        lastProgressS: now,
        strikeOnTimeout: holdsAll,
        askedS: new Map(),
      };
      nb.assignments.set(seq, a);
    } else {
      a.strikeOnTimeout = a.strikeOnTimeout && holdsAll;
    }
    for (const i of ask.pieces) a.pieces.add(i);
    let asked = this.inflight.get(seq);
    if (asked === undefined) {
      asked = new Map();
      this.inflight.set(seq, asked);
    }
    for (const i of ask.pieces) {
      asked.set(i, nb.peerId);
      a.askedS.set(i, now);
    }
    if (ask.wantHeader) {
      a.headerPending = true;
      this.headerFrom.set(seq, nb.peerId);
    }
    nb.meter.busy(now);
    return moved;
  }
}
