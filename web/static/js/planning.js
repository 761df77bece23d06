// What the window wants: for each chunk between playout and the newest heard of, the pieces missing
// and the neighbours that may serve them (the input of scheduler.js). The JavaScript twin of
// streamer/swarm/planning.py, with the same rules: the window is fetchAheadChunks past the next
// chunk to play, more when playout added lag; a piece asked of someone is wanted again only when it
// is stuck there (moveAfterS past its holder's slow response, the upper quartile of its recent
// ones; never from the source or a holder whose usual response is slower than moveMaxResponseS); a
// neighbour that answered absent is left out until its notFrom time; one we gave up a request for
// that chunk at is left out until its gaveUp time, except as a last resort for an urgent chunk that
// no other neighbour holds; a neighbour that announced a chunk before we verified its header is an
// "earlier" holder; every holder counts for rarity, but only one with room (or the source) may be
// asked; the clock alone changes the plan when a chunk turns urgent, a notFrom or gaveUp period
// ends or a piece becomes stuck (replanAtS). JS only: a chunk whose header is being checked is not
// asked for.

import { mayServe } from "./scheduler.js";

const byNumber = (a, b) => a - b;

export class Planner {
  constructor(ctx, { playout, checks }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs } = ctx);
    this.playout = playout;
    this.checks = checks;
  }

  /**
   * The wants of the window: {wants, replanAtS, unplannable, peersLinked}.
   * inflight: seq -> Map(piece -> whom we asked); headerFrom: seq -> whom we asked for its
   * header; headerS: seq -> when we verified its header; room: Map(uploader -> pieces more we may
   * ask of it).
   */
  survey(now, inflight, headerFrom, headerS, room) {
    const pb = this.playout.playback;
    const lo = pb.nextSeq;
    // A lag grown beyond the window would leave the freshest chunks unfetched.
    const ahead =
      this.config.fetchAheadChunks +
      Math.ceil(Math.max(0, pb.lagAddedS) / this.config.chunkDurationS);
    const hi = Math.min(this.playout.newestHeard, lo + ahead);
    // Neighbours without room get no Holder (most of them, in a busy swarm).
    const uploaders = [];
    for (const nb of this.nbrs.values()) {
      if (nb.uploads) uploaders.push({ nb, askable: nb.isSource || room.get(nb.peerId) > 0 });
    }
    const peersLinked = uploaders.some(({ nb }) => !nb.isSource);
    const wants = [];
    const changesS = [];
    let unplannable = 0;
    for (let seq = lo; seq <= hi; seq++) {
      const chunk = this.store.get(seq);
      const missing = [];
      let missingMask = 0n;
      let stuck = [];
      if (chunk !== null) {
        if (chunk.complete) continue;
        const asked = inflight.get(seq);
        if (asked !== undefined && asked.size) {
          const found = this.stuckPieces(seq, asked, now);
          stuck = found.stuck;
          if (found.nextS !== null) changesS.push(found.nextS); // (then pieces may move)
        }
        const moving = new Set(stuck.map(([i]) => i));
        chunk.pieces.forEach((p, i) => {
          if (p === null && (!asked?.has(i) || moving.has(i))) missing.push(i);
        });
        if (missing.length === 0) continue;
        for (const i of missing) missingMask |= 1n << BigInt(i);
      } else if (headerFrom.has(seq) || this.checks.has(seq)) {
        continue; // someone is sending us its header (or we are checking one)
      }
      const mineS = headerS.get(seq);
      const deadlineS = pb.deadline(seq, this.playout.mediaStartS(seq), now);
      const urgent = deadlineS - now <= this.config.urgentS;
      let holders = [];
      let count = 0;
      let leftOut = false;
      const lastResort = [];
      let lastResortCount = 0;
      for (const { nb, askable } of uploaders) {
        const notFromS = nb.notFrom.get(seq);
        if (notFromS !== undefined && notFromS > now) {
          changesS.push(notFromS);
          continue;
        }
        const gaveUpS = nb.gaveUp.get(seq);
        const givenUp = gaveUpS !== undefined && gaveUpS > now;
        if (givenUp && !urgent) {
          changesS.push(gaveUpS);
          leftOut = true;
          continue;
        }
        const knownMask = nb.knownMask(seq);
        const announced = nb.isSource ? undefined : nb.announcedS.get(seq);
        const earlier = announced !== undefined && (mineS === undefined || announced <= mineS);
        if (knownMask !== 0n || earlier) {
          if (givenUp) lastResortCount += 1;
          else count += 1;
          if (askable) {
            const holder = { peerId: nb.peerId, knownMask, earlier, source: nb.isSource };
            if (mayServe(holder, missingMask, urgent, peersLinked)) {
              (givenUp ? lastResort : holders).push(holder);
            }
          }
        }
      }
      if (!count) {
        holders = lastResort;
        count = lastResortCount;
      }
      if ((count || leftOut) && !urgent) {
        // (a hair past the crossing, so that float rounding cannot make it not urgent)
        changesS.push(deadlineS - this.config.urgentS + 1e-6);
      }
      if (holders.length) {
        const needHeader = chunk === null;
        wants.push({ seq, deadlineS, missing, needHeader, holders, holderCount: count, stuck });
      } else if (count) {
        unplannable += missing.length || 1;
      }
    }
    const replanAtS = changesS.length ? Math.min(...changesS) : null;
    return { wants, replanAtS, unplannable, peersLinked };
  }

  /**
   * {stuck: [[piece, peerId]...], nextS}: pieces of seq asked of a peer that has sent nothing of
   * them for moveAfterS beyond its slow response (they wait in its upload queue behind other
   * requesters' pieces longer than its queue usually holds them), and when the next of the others
   * will be stuck (null: never, as things stand).
   */
  stuckPieces(seq, asked, now) {
    const stuck = [];
    let nextS = null;
    const owners = [...new Set(asked.values())].sort();
    for (const owner of owners) {
      const nb = this.nbrs.get(owner);
      if (nb === undefined || nb.isSource) continue;
      const a = nb.assignments.get(seq);
      if (a === undefined) continue;
      const waitS = nb.expectedWaitS(this.config.initialResponseS);
      if (waitS >= this.config.moveMaxResponseS) continue;
      const slowS = nb.response.slowS;
      const moveS = this.config.moveAfterS + (slowS === null ? waitS : slowS);
      for (const i of [...a.pieces].sort(byNumber)) {
        if (asked.get(i) !== owner) continue;
        const stuckS = Math.max(a.lastProgressS, a.askedS.get(i) ?? now) + moveS;
        if (stuckS <= now) stuck.push([i, owner]);
        else if (nextS === null || stuckS < nextS) nextS = stuckS;
      }
    }
    return { stuck, nextS };
  }
}
