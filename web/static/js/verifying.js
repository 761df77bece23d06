// Chunk headers waiting for their signature check (JS only: WebCrypto verifies asynchronously,
// the Python core's verifier answers at once).
//
// When a chunk header with new bytes arrives, the core emits VerifyHeader and keeps the header,
// and the pieces of that chunk that arrive meanwhile (at most maxHeldPieceBytes; also pieces we
// asked for that come before the header itself, as the Python core does), aside and unstored; the driver's answer (SwarmPeer.headerVerified) stores the header and feeds the held
// pieces in, or drops every neighbour that sent those bytes as a forger. With verifyHeaderSync
// the check happens at once and nothing is held. Rules: nothing unverified is stored, played or
// forwarded; at most 4 different headers per seq wait at once (all but one are forged).

import { ByeReason } from "./wire.js";
import { sameBytes } from "./chunkstore.js";

const MAX_PENDING_PER_SEQ = 4;

export class HeaderChecks {
  /**
   * @param {object} parts
   * @param {(header) => boolean | null} parts.verifyHeaderSync  null: VerifyHeader events
   * @param {object} parts.peer  the dispatcher: headerAccepted(nb, header, isNew, now) -> bool
   *   (true: replan), announceNew(seq, now), onPiece(nb, msg, sizeBytes, now, replay)
   */
  constructor(ctx, { verifyHeaderSync, peer }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs, outbox: this.outbox } = ctx);
    this.verifyHeaderSync = verifyHeaderSync;
    this.peer = peer;
    /** seq -> [{header, senders: Set<peerId>}]: headers being verified. */
    this.pending = new Map();
    /** seq -> [{peerId, msg, sizeBytes}]: pieces held until their chunk's header is verified. */
    this.held = new Map();
    this.heldBytes = 0;
  }

  /** Is a header of seq being checked? */
  has(seq) {
    return this.pending.has(seq);
  }

  /** Is a header of seq or of a later chunk being checked? */
  anyFrom(seq) {
    for (const pending of this.pending.keys()) if (pending >= seq) return true;
    return false;
  }

  /**
   * A header arrived from nb: known bytes are accepted at once, new bytes wait for their check
   * (or are checked at once with verifyHeaderSync). True if that may change what we ask of whom.
   */
  onHeader(nb, header, now) {
    const existing = this.store.get(header.seq);
    if (existing !== null && sameBytes(existing.header.raw ?? new Uint8Array(0), header.raw)) {
      nb.lastDataS = now;
      return this.peer.headerAccepted(nb, header, false, now);
    }
    if (existing === null && header.seq < this.store.floorSeq) {
      // Too old to store; a forgery is still a forgery (checked when we can do it at once).
      if (this.verifyHeaderSync === null) return false;
      if (!this.checkSync(header)) {
        this.outbox.drop(nb, `forged chunk header for seq ${header.seq}`, ByeReason.FORGED);
        return true;
      }
      nb.lastDataS = now;
      return this.peer.headerAccepted(nb, header, false, now);
    }
    let list = this.pending.get(header.seq);
    const same = list?.find((p) => sameBytes(p.header.raw, header.raw));
    if (same) {
      nb.lastDataS = now;
      same.senders.add(nb.peerId);
      return false;
    }
    if (list === undefined) {
      list = [];
      this.pending.set(header.seq, list);
    }
    if (list.length >= MAX_PENDING_PER_SEQ) {
      // several different headers for one seq at once: all but the genuine one are forged, and
      // there is no need to hold more than a few; this sender's copy waits for the next request.
      nb.lastDataS = now;
      return false;
    }
    const pending = { header, senders: new Set([nb.peerId]) };
    if (this.verifyHeaderSync !== null) {
      if (list.length === 0) this.pending.delete(header.seq);
      return this.settle(pending, this.checkSync(header), now);
    }
    nb.lastDataS = now;
    list.push(pending);
    this.outbox.emit({ kind: "VerifyHeader", seq: header.seq, header });
    return false;
  }

  /**
   * The driver's answer to a VerifyHeader event: true if that may change the plan, null when it
   * came too late (answered already, or the chunk fell out of the window meanwhile).
   */
  verified(header, ok, now) {
    const list = this.pending.get(header.seq);
    const at = list ? list.findIndex((p) => sameBytes(p.header.raw, header.raw)) : -1;
    if (at < 0) return null;
    const [pending] = list.splice(at, 1);
    if (list.length === 0) this.pending.delete(header.seq);
    return this.settle(pending, ok, now);
  }

  checkSync(header) {
    try {
      return this.verifyHeaderSync(header) === true;
    } catch {
      return false;
    }
  }

  /**
   * A header's signature check came back: store it, or drop whoever sent it. True if that may
   * change what we ask of whom.
   */
  settle(pending, ok, now) {
    const seq = pending.header.seq;
    if (!ok) {
      for (const pid of pending.senders) {
        const nb = this.nbrs.get(pid);
        if (nb !== undefined) {
          this.outbox.drop(nb, `forged chunk header for seq ${seq}`, ByeReason.FORGED);
        }
      }
      if (!this.pending.has(seq)) this.releaseHeld(seq, null, now);
      return true;
    }
    let replan = false;
    if (this.store.get(seq) !== null) {
      // A second valid header for one seq (the source re-signed): keep the first, as Python does.
      for (const pid of pending.senders) {
        const nb = this.nbrs.get(pid);
        if (nb === undefined) continue;
        nb.lastDataS = now;
        replan = this.peer.headerAccepted(nb, pending.header, false, now) || replan;
      }
      return replan;
    }
    const isNew = this.store.addVerifiedHeader(pending.header) === true;
    let first = true;
    for (const pid of pending.senders) {
      const nb = this.nbrs.get(pid);
      if (nb !== undefined) {
        nb.lastDataS = now;
        replan = this.peer.headerAccepted(nb, pending.header, isNew && first, now) || replan;
        first = false;
      }
    }
    if (isNew && first) {
      // every sender left meanwhile: still announce what we now hold
      this.peer.announceNew(seq, now);
      replan = true;
    }
    this.releaseHeld(seq, isNew ? this.store.get(seq) : null, now);
    return replan;
  }

  /**
   * Hold a piece whose chunk header is being verified, or has not come yet but was asked of nb
   * (pieces travel unordered: the header, in order, may wait for a retransmission); false when
   * it cannot be held.
   */
  hold(nb, msg, sizeBytes) {
    const asked = nb.assignments.get(msg.seq)?.pieces.has(msg.index) ?? false;
    if (!this.pending.has(msg.seq) && !asked) return false;
    if (this.heldBytes + msg.payload.length > this.config.maxHeldPieceBytes) return false;
    let held = this.held.get(msg.seq);
    if (held === undefined) {
      held = [];
      this.held.set(msg.seq, held);
    }
    if (held.some((h) => h.msg.index === msg.index)) return false;
    held.push({ peerId: nb.peerId, msg, sizeBytes });
    this.heldBytes += msg.payload.length;
    return true;
  }

  /** Pieces held while seq's header was checked: feed them in now (chunk null: discard them). */
  releaseHeld(seq, chunk, now) {
    const held = this.held.get(seq);
    if (held === undefined) return;
    this.held.delete(seq);
    for (const h of held) {
      this.heldBytes -= h.msg.payload.length;
      const nb = this.nbrs.get(h.peerId);
      if (chunk === null || nb === undefined) continue;
      this.peer.replayPiece(nb, h.msg, h.sizeBytes, now);
    }
  }

  /** Playout moved on: forget checks and held pieces below floorSeq. */
  evictBelow(floorSeq, now) {
    for (const seq of [...this.held.keys()]) if (seq < floorSeq) this.releaseHeld(seq, null, now);
    for (const seq of [...this.pending.keys()]) if (seq < floorSeq) this.pending.delete(seq);
  }
}
