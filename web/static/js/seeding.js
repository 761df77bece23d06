// The source's first copies: which uploader gets each piece of a fresh chunk, the copy budget.
//
// The same rules as the Python core's streamer/swarm/seeding.py, held together by
// tests/scenarios/seeding.json and tests/test_conformance.py: an uploader's weight is 1 / its seed response (how soon it asks
// for the pieces it was offered: a request waits behind its uploads just as its forwarded pieces
// will), at least floorS; one never measured gets the median of those measured (priorS when none
// is). Pieces go out by smooth weighted round robin over uploaders in peer-id order, credit
// carried from chunk to chunk. A first copy is always served to the neighbour it was offered to;
// copies beyond it come out of a per-chunk budget of (sourceMaxCopies - 1) chunk sizes, at most
// sourceMaxShare of it per neighbour; a first copy that has not spread is offered again to one
// more linked uploader per sourceReseedIntervalS while the chunk is younger than
// sourceReseedWindowS.

import { pieceLength } from "./chunkheader.js";
import { allTrue } from "./announcing.js";
import { hasBit, maskOf } from "./scheduler.js";

const byPeerId = (a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0);

/**
 * Weight per uploader (in the map's order) from its seed response, null if unmeasured.
 * @param {Map<string, number|null>} responsesS
 * @returns {Map<string, number>}
 */
export function seedWeights(responsesS, floorS, priorS) {
  const known = [...responsesS.values()].filter((r) => r !== null).sort((a, b) => a - b);
  const unknownS = known.length ? known[Math.floor(known.length / 2)] : priorS;
  const out = new Map();
  for (const [pid, r] of responsesS) out.set(pid, 1 / Math.max(floorS, r === null ? unknownS : r));
  return out;
}

/**
 * The uploader of each piece's first copy; credit (Map uploader -> credit) is carried over
 * between chunks and updated here (uploaders no longer weighed are dropped from it).
 * @param {Map<string, number>} weights
 * @param {number} pieceCount
 * @param {Map<string, number>} credit
 * @returns {string[]}
 */
export function assignFirstCopies(weights, pieceCount, credit) {
  for (const pid of [...credit.keys()]) if (!weights.has(pid)) credit.delete(pid);
  let total = 0;
  for (const weight of weights.values()) total += weight;
  const out = [];
  for (let n = 0; n < pieceCount; n++) {
    let best = null;
    for (const [pid, weight] of weights) {
      credit.set(pid, (credit.get(pid) ?? 0) + weight);
      if (best === null || credit.get(pid) > credit.get(best)) best = pid;
    }
    if (best === null) break;
    credit.set(best, credit.get(best) - total);
    out.push(best);
  }
  return out;
}

/**
 * The source's side of a fresh chunk: first copies, the whole-chunk announce that follows them,
 * offers again of first copies that did not spread, and the copy budget.
 */
export class Seeder {
  constructor(ctx, { announcer }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs } = ctx);
    this.announcer = announcer;
    /** seq -> [whenS, peerIds]: the whole-chunk have goes then, after the first copies. */
    this.announceLater = new Map();
    /** seq -> when to look again for first copies that have not spread (see reseedStuck). */
    this.reseedAt = new Map();
    /**
     * seq -> Map(piece index -> Set of neighbours offered it again since its first copy did
     * not spread): their copies are first copies too, outside the budget.
     */
    this.reseeded = new Map();
    /** seq -> bytes of copies beyond the first that are queued or sent (the budget). */
    this.reserved = new Map();
    /** seq -> Map(piece index -> the neighbour we super-seeded it to: its first copy). */
    this.target = new Map();
    this.turn = 0;
    /** seq -> Map(neighbour -> when we super-seeded it pieces of seq, until it asks for them). */
    this.sentS = new Map();
    /** Weighted round robin of first copies over uploaders (see assignFirstCopies). */
    this.credit = new Map();
    /**
     * seq -> Map(piece index -> how many neighbours announced it without getting it from us):
     * at sourceSpreadHolders, its first copy is spreading through the swarm.
     */
    this.spread = new Map();
  }

  /** A fresh chunk: offer its first copies now, the whole chunk to everyone a little later. */
  publish(seq, pieceCount, now) {
    this.superSeed(seq, pieceCount, now);
    if (this.nbrs.size) {
      this.announceLater.set(seq, [now + this.config.sourceAnnounceDelayS, [...this.nbrs.keys()]]);
    }
  }

  evictBelow(floorSeq) {
    for (const table of [
      this.reserved,
      this.target,
      this.reseeded,
      this.spread,
      this.reseedAt,
      this.sentS,
    ]) {
      for (const old of [...table.keys()]) if (old < floorSeq) table.delete(old);
    }
  }

  /**
   * Advertise each piece of a fresh chunk to one uploading neighbour, different pieces to
   * different neighbours, so the first copies land on many peers and their uplinks all start
   * working at once; more of them on neighbours that ask soon for what they are offered.
   *
   * Relays get no preference by role: a relay may be upload-capped, and a first copy stuck
   * behind a slow uplink delays that piece for everyone. Only neighbours linked into the swarm
   * are seeded (see sourceSeedProofS); if none is, all uploaders are.
   */
  superSeed(seq, pieceCount, now) {
    const proofS = this.config.sourceSeedProofS;
    const uploaders = [...this.nbrs.values()].filter((nb) => nb.uploads && !nb.isSource);
    const linked = uploaders.filter(
      (nb) =>
        now - nb.connectedS < proofS || (nb.fedByPeersS !== null && now - nb.fedByPeersS < proofS),
    );
    const order = (linked.length ? linked : uploaders).sort(byPeerId);
    if (order.length === 0) return;
    const weights = seedWeights(
      new Map(order.map((nb) => [nb.peerId, nb.seedResponse.baseS])),
      this.config.sourceSeedResponseFloorS,
      this.config.initialResponseS,
    );
    const bits = new Map();
    let targets = this.target.get(seq);
    if (targets === undefined) {
      targets = new Map();
      this.target.set(seq, targets);
    }
    assignFirstCopies(weights, pieceCount, this.credit).forEach((pid, index) => {
      if (!bits.has(pid)) bits.set(pid, new Array(pieceCount).fill(false));
      bits.get(pid)[index] = true;
      targets.set(index, pid);
    });
    this.turn += pieceCount;
    const sent = this.sentS.get(seq) ?? new Map();
    this.sentS.set(seq, sent);
    for (const [pid, mask] of bits) {
      sent.set(pid, now);
      this.announcer.sendHave(this.nbrs.get(pid), seq, mask);
    }
  }

  /**
   * Offer pieces whose first copy has not spread yet to one more linked uploader each.
   *
   * A first copy can sit at a neighbour whose uplink is slow or queued; until the whole-chunk
   * announce, nobody else may know it exists, and after it everyone would wait for it to turn
   * urgent. The offer is repeated every sourceReseedIntervalS while the chunk is young, each
   * time to an uploader not offered it yet. Such a copy is served even when fallback requests
   * have spent the budget (see admit).
   */
  reseedStuck(seq, pieceCount, now) {
    const spread = this.spread.get(seq) ?? new Map();
    const enough = this.config.sourceSpreadHolders;
    const targets = this.target.get(seq) ?? new Map();
    const stuck = [];
    for (let i = 0; i < pieceCount; i++) {
      if ((spread.get(i) ?? 0) < enough && targets.has(i)) stuck.push(i);
    }
    if (stuck.length === 0) return;
    const proofS = this.config.sourceSeedProofS;
    const order = [...this.nbrs.values()]
      .filter(
        (nb) =>
          nb.uploads && !nb.isSource && nb.fedByPeersS !== null && now - nb.fedByPeersS < proofS,
      )
      .sort(byPeerId);
    const bits = new Map();
    let reseeded = this.reseeded.get(seq);
    if (reseeded === undefined) {
      reseeded = new Map();
      this.reseeded.set(seq, reseeded);
    }
    stuck.forEach((index, n) => {
      if (!reseeded.has(index)) reseeded.set(index, new Set());
      const tried = reseeded.get(index);
      const first = targets.get(index);
      const choices = order.filter(
        (nb) =>
          nb.peerId !== first &&
          !tried.has(nb.peerId) &&
          !nb.complete.has(seq) &&
          !hasBit(nb.knownMask(seq), index),
      );
      if (choices.length === 0) return;
      const pick = choices[(this.turn + n) % choices.length];
      tried.add(pick.peerId);
      if (!bits.has(pick.peerId)) bits.set(pick.peerId, new Array(pieceCount).fill(false));
      bits.get(pick.peerId)[index] = true;
    });
    for (const [pid, maskBits] of bits) this.announcer.sendHave(this.nbrs.get(pid), seq, maskBits);
  }

  /** Whole-chunk announces that are due, and offers again of first copies not spread. */
  handleTimer(now) {
    const intervalS = this.config.sourceReseedIntervalS;
    for (const [seq, [when, pids]] of [...this.announceLater]) {
      if (when > now) continue;
      this.announceLater.delete(seq);
      const chunk = this.store.get(seq);
      if (chunk === null) continue;
      this.reseedStuck(seq, chunk.pieces.length, now);
      this.reseedAt.set(seq, now + intervalS);
      const bits = allTrue(chunk.pieces.length);
      for (const pid of pids) {
        const target = this.nbrs.get(pid);
        if (target !== undefined && !target.complete.has(seq)) {
          this.announcer.sendHave(target, seq, bits);
        }
      }
    }
    for (const [seq, when] of [...this.reseedAt]) {
      if (when > now) continue;
      const chunk = this.store.get(seq);
      const windowS = this.config.sourceReseedWindowS;
      if (chunk === null || now - Number(chunk.header.releaseUs) / 1e6 > windowS) {
        this.reseedAt.delete(seq);
        continue;
      }
      this.reseedStuck(seq, chunk.pieces.length, now);
      this.reseedAt.set(seq, now + intervalS);
    }
  }

  nextTimerS() {
    const times = [];
    for (const [when] of this.announceLater.values()) times.push(when);
    for (const when of this.reseedAt.values()) times.push(when);
    return times.length ? Math.min(...times) : null;
  }

  /**
   * nb announced pieces of seq (bits; it was known to hold before): pieces it did not get from
   * us are spreading, and nb is fed by peers.
   */
  heardHave(nb, seq, bits, before, now) {
    const fed = maskOf(bits) & ~(nb.sentMask.get(seq) ?? 0n);
    if (fed === 0n) return;
    nb.fedByPeersS = now;
    const news = fed & ~before; // (each neighbour counts once per piece)
    if (news === 0n) return;
    if (!this.spread.has(seq)) this.spread.set(seq, new Map());
    const counts = this.spread.get(seq);
    for (let i = 0; i < bits.length; i++) {
      if (hasBit(news, i)) counts.set(i, (counts.get(i) ?? 0) + 1);
    }
  }

  /** nb asked for pieces of seq: how soon after our offer (its seed response). */
  asked(nb, seq, now) {
    const sentS = this.sentS.get(seq)?.get(nb.peerId);
    if (sentS !== undefined) {
      this.sentS.get(seq).delete(nb.peerId);
      nb.seedResponse.sample(now - sentS);
    }
  }

  /** We sent piece index of seq to nb (its haves of it then do not count as spread). */
  served(nb, seq, index) {
    nb.sentMask.set(seq, (nb.sentMask.get(seq) ?? 0n) | (1n << BigInt(index)));
  }

  /**
   * Which requested pieces the source serves: {served, refused, reserved (bytes of extra
   * copies)}.
   *
   * A first copy (a piece super-seeded to this very neighbour) is always served; the budget
   * bounds the copies beyond it, so fallback requests cannot crowd it out. (A piece super-seeded
   * to nobody has its first copy claimed by its first requester.) A piece offered again because
   * its first copy did not spread is served like a first copy, but counts against the budget,
   * leaving less for fallback. No neighbour takes more than sourceMaxShare of the budget.
   */
  admit(nb, chunk, indices) {
    const seq = chunk.header.seq;
    let seeded = this.target.get(seq);
    if (seeded === undefined) {
      seeded = new Map();
      this.target.set(seq, seeded);
    }
    const reseeded = this.reseeded.get(seq) ?? new Map();
    const budget = (this.config.sourceMaxCopies - 1) * chunk.header.totalSize;
    const share = this.config.sourceMaxShare * budget;
    let total = this.reserved.get(seq) ?? 0;
    const before = nb.extraBytes.get(seq) ?? 0;
    let mine = before;
    const served = [];
    const refused = [];
    for (const i of indices) {
      if (!seeded.has(i)) seeded.set(i, nb.peerId);
      if (seeded.get(i) !== nb.peerId) {
        const size = pieceLength(chunk.header, i);
        const offeredAgain = reseeded.get(i)?.has(nb.peerId) ?? false;
        if (!offeredAgain && (total + size > budget || mine + size > share)) {
          refused.push(i);
          continue;
        }
        total += size;
        mine += size;
      }
      served.push(i);
    }
    this.reserved.set(seq, total);
    nb.extraBytes.set(seq, mine);
    return { served, refused, reserved: mine - before };
  }

  /** Give back the budget for pieces of item it will not send after all (all, or dropped). */
  release(item, dropped = null) {
    if (!item.reservedBytes) return;
    const chunk = this.store.get(item.seq);
    if (chunk === null) return;
    const pieces = dropped === null ? item.pieces : dropped;
    let size = 0;
    for (const i of pieces) size += pieceLength(chunk.header, i);
    const back = Math.min(item.reservedBytes, size);
    item.reservedBytes -= back;
    this.reserved.set(item.seq, (this.reserved.get(item.seq) ?? 0) - back);
    const nb = this.nbrs.get(item.peerId);
    if (nb !== undefined && nb.extraBytes.has(item.seq)) {
      nb.extraBytes.set(item.seq, nb.extraBytes.get(item.seq) - back);
    }
  }
}
