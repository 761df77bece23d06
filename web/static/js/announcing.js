// Telling neighbours what we hold: hello and buffer map on a new link, haves, header pushes.
// The JavaScript twin of streamer/swarm/announcing.py.
//
// Rules: a neighbour is owed a have per seq (haveDue) and gets at most one have per haveIntervalS
// carrying every piece held by then; a have that tells a neighbour nothing it lacks is not sent
// (except to the source, which learns from it that we are fed by peers); a header goes ahead of
// the first have of a chunk to a neighbour that has shown no sign of it (pushHeaders).

import { Capability, MAX_BUFFER_MAP_BITS, PROTOCOL_VERSION, Role, encodeMessage } from "./wire.js";
import { maskOf } from "./scheduler.js";

const byNumber = (a, b) => a - b;

/** A have's bits for a whole chunk. */
export const allTrue = (n) => new Array(n).fill(true);

export class Announcer {
  constructor(ctx, { role, uplink }) {
    ({ config: this.config, store: this.store, nbrs: this.nbrs, outbox: this.outbox } = ctx);
    this.role = role;
    this.uplink = uplink;
  }

  /** Our hello: who we are and whether we upload (sent again when that changes). */
  hello(nb, upload) {
    const capabilities = Capability.PARTIAL | (upload ? Capability.UPLOAD : Capability.NONE);
    nb.control.push(
      encodeMessage({ type: "hello", version: PROTOCOL_VERSION, role: this.role, capabilities }),
    );
    this.outbox.wake(nb.peerId);
  }

  /** A new link: our hello, then a buffer map of the complete chunks we hold. */
  greet(nb, upload) {
    this.hello(nb, upload);
    const have = this.store.completeSeqs();
    if (have.length) {
      const newest = have[have.length - 1];
      const base = Math.max(have[0], newest - MAX_BUFFER_MAP_BITS + 1);
      const members = new Set(have);
      const bits = [];
      for (let s = base; s <= newest; s++) bits.push(members.has(s));
      nb.control.push(encodeMessage({ type: "buffer_map", baseSeq: base, bits }));
    }
    this.outbox.wake(nb.peerId);
  }

  /**
   * A have, preceded by the chunk's signed header when nb has shown no sign of it.
   *
   * Pushing the header (a few hundred bytes) with the first have saves nb a request round trip
   * through our upload queue before it can ask anyone for pieces: on every hop.
   */
  sendHave(nb, seq, bits) {
    const chunk = this.store.get(seq);
    if (
      this.config.pushHeaders &&
      chunk !== null &&
      !nb.headersSent.has(seq) &&
      nb.knownMask(seq) === 0n
    ) {
      nb.headersSent.add(seq);
      this.outbox.send(nb, encodeMessage(chunk.header));
    }
    this.outbox.send(nb, encodeMessage({ type: "have", seq, pieces: bits }));
  }

  /** Owe every neighbour (but skip) a have of seq; see flush for when it goes. */
  announce(seq, skip, now) {
    for (const nb of this.nbrs.values()) {
      if (nb.peerId !== skip && (!nb.complete.has(seq) || nb.isSource)) {
        nb.haveDue.add(seq);
        if (now >= nb.haveNextS) this.flush(nb, now);
      }
    }
  }

  /** The timer: send the haves whose interval has passed. */
  flushDue(now) {
    for (const nb of this.nbrs.values()) {
      if (nb.haveDue.size && now >= nb.haveNextS) this.flush(nb, now);
    }
  }

  /** When the next owed have may go (null: none is owed). */
  nextDueS() {
    let soonest = null;
    for (const nb of this.nbrs.values()) {
      if (nb.haveDue.size && (soonest === null || nb.haveNextS < soonest)) soonest = nb.haveNextS;
    }
    return soonest;
  }

  /**
   * Send nb one have per owed seq, carrying every piece we hold now, at most once per
   * haveIntervalS: a have per verified piece per neighbour dominated the traffic, and one have a
   * little later carries all the pieces that arrived meanwhile. A have that tells nb nothing it
   * lacks (its own haves show it holds all our pieces) is not sent.
   */
  flush(nb, now) {
    let sent = false;
    for (const seq of [...nb.haveDue].sort(byNumber)) {
      const chunk = this.store.get(seq);
      if (chunk === null) continue;
      const theirs = nb.knownMask(seq);
      let bits;
      if (chunk.complete) {
        // The source hears of every chunk we complete (it holds them all): that tells it we
        // are fed by peers (see sourceSeedProofS).
        if (theirs === -1n && !nb.isSource) continue;
        bits = allTrue(chunk.pieces.length);
      } else if (theirs === -1n) {
        continue;
      } else {
        bits = chunk.bits();
        const mine = maskOf(bits);
        if (mine !== 0n && (mine & ~theirs) === 0n) continue;
      }
      this.sendHave(nb, seq, bits);
      sent = true;
    }
    nb.haveDue.clear();
    if (sent) nb.haveNextS = now + this.haveIntervalS();
  }

  /**
   * How often at most a have goes to one neighbour: haveIntervalS, or longer on an uplink
   * measured narrow (see haveUplinkShare). Never for the source: its haves are the first news of
   * every chunk.
   */
  haveIntervalS() {
    if (this.role === Role.SOURCE) return this.config.haveIntervalS;
    return haveIntervalFor(this.config, this.nbrs.size, this.uplink.capacityBytesPerS);
  }
}

/**
 * How often at most a have goes to one neighbour, so that haves to all of them take at most
 * haveUplinkShare of the uplink (unknown: haveIntervalS).
 */
export function haveIntervalFor(config, neighbours, uplinkBytesPerS) {
  if (!uplinkBytesPerS) return config.haveIntervalS;
  const neededS = (neighbours * config.haveWireBytes) / (config.haveUplinkShare * uplinkBytesPerS);
  return Math.min(config.maxHaveIntervalS, Math.max(config.haveIntervalS, neededS));
}
