// Peer exchange: hints about neighbours' neighbours, and WebRTC signals relayed through them.
// The JavaScript twin of streamer/swarm/exchange.py (the rules are written there).
//
// Each neighbour is told, every exchangeIntervalS, which uploading peers we are linked to
// (`peers`, a hint list nobody signed: kept per neighbour, bounded, expiring, only ever used as
// ids to try); a WebRTC offer can then go to one of them through the neighbour that named it
// (`signal`), the answer coming back the same way. The driver chooses between the server and
// exchangeCandidates; the core never opens links. A relayed signal carries the id of the
// neighbour it came from, whatever that neighbour wrote, and goes only to a current neighbour.

import { PEER_ID_PATTERN, encodeMessage } from "./wire.js";

const SIGNAL_WINDOW_S = 1.0;

const byId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

export class Exchange {
  constructor(ctx, { ownId, banned }) {
    this.config = ctx.config;
    this.nbrs = ctx.nbrs;
    this.outbox = ctx.outbox;
    this.ownId = ownId;
    this.banned = banned;
    /** When each neighbour gets its next peers message. */
    this.dueS = new Map();
    /** Peers messages sent to each neighbour so far (the rotation of a long list). */
    this.sent = new Map();
    /** Per neighbour: {receivedS, ids} of its last peers message. */
    this.hints = new Map();
    /** Per neighbour: {startS, taken}, the current one-second window of signals. */
    this.signalWindow = new Map();
    this.signalsRelayed = 0;
    this.signalsDropped = 0;
  }

  // ------------------------------------------------------------------ links

  /** A link opened: its first peers message goes soon (after hellos have crossed). */
  greet(nb, now) {
    if (this.config.exchangeIntervalS > 0) this.dueS.set(nb.peerId, now + this.config.exchangeFirstS);
  }

  forget(peerId) {
    this.dueS.delete(peerId);
    this.sent.delete(peerId);
    this.hints.delete(peerId);
    this.signalWindow.delete(peerId);
  }

  // ------------------------------------------------------------------ hints out

  nextDueS() {
    if (this.dueS.size === 0) return null;
    return Math.min(...this.dueS.values());
  }

  /** Send the peers messages that are due (neighbours in link order). */
  flushDue(now) {
    for (const [peerId, dueS] of [...this.dueS]) {
      if (dueS > now) continue;
      this.dueS.set(peerId, now + this.config.exchangeIntervalS);
      const nb = this.nbrs.get(peerId);
      if (nb === undefined) continue;
      const listed = this.listedFor(peerId);
      if (listed.length) this.outbox.send(nb, encodeMessage({ type: "peers", peerIds: listed }));
    }
  }

  /** Up to exchangeMaxPeers uploading neighbours other than peerId and the source, sorted, the
   * window rotating by that many with each message to peerId. */
  listedFor(peerId) {
    const ids = [];
    for (const nb of this.nbrs.values()) {
      if (nb.peerId === peerId || !nb.helloReceived || !nb.uploads || nb.isSource) continue;
      if (PEER_ID_PATTERN.test(nb.peerId)) ids.push(nb.peerId);
    }
    ids.sort(byId);
    const limit = this.config.exchangeMaxPeers;
    if (ids.length <= limit) return ids;
    const sent = this.sent.get(peerId) ?? 0;
    this.sent.set(peerId, sent + 1);
    const start = (sent * limit) % ids.length;
    return [...ids, ...ids].slice(start, start + limit);
  }

  // ------------------------------------------------------------------ hints in

  /** Keep nb's hints (replacing its last ones): never ourselves or nb. */
  onPeers(nb, msg, now) {
    const ids = [];
    for (const p of msg.peerIds) {
      if (p !== this.ownId && p !== nb.peerId && !ids.includes(p)) ids.push(p);
    }
    this.hints.set(nb.peerId, { receivedS: now, ids });
  }

  /** Up to count [peerId, via]: ids named by more neighbours first, then by id; the relay is
   * the first of those neighbours by id. */
  candidates(count, now) {
    const vias = new Map();
    for (const [via, { receivedS, ids }] of this.hints) {
      if (now - receivedS > this.config.exchangeHintTtlS || !this.nbrs.has(via)) continue;
      for (const peerId of ids) {
        if (this.nbrs.has(peerId) || this.banned.has(peerId) || peerId === this.ownId) continue;
        if (!vias.has(peerId)) vias.set(peerId, []);
        vias.get(peerId).push(via);
      }
    }
    const ranked = [...vias.keys()].sort(
      (a, b) => vias.get(b).length - vias.get(a).length || byId(a, b),
    );
    return ranked
      .slice(0, Math.max(0, count))
      .map((p) => [p, vias.get(p).slice().sort(byId)[0]]);
  }

  /** Distinct peers we could try now (for stats). */
  hintedCount(now) {
    return this.candidates(this.config.maxNeighbours * 16, now).length;
  }

  // ------------------------------------------------------------------ signals

  /** Queue a signal for `to` on the link to `via`; false if that cannot be sent (no such
   * neighbour, an id outside the pattern, our own id unknown, a payload too long). */
  sendSignal(via, to, payload) {
    const nb = this.nbrs.get(via);
    if (nb === undefined || !PEER_ID_PATTERN.test(to) || !PEER_ID_PATTERN.test(this.ownId)) {
      return false;
    }
    let data;
    try {
      data = encodeMessage({ type: "signal", to, from: this.ownId, payload });
    } catch {
      return false;
    }
    this.outbox.send(nb, data);
    return true;
  }

  /** For us: an event. For another neighbour: forwarded, from rewritten to nb. Else dropped
   * (and beyond the rate limit). */
  onSignal(nb, msg, now) {
    if (!this.withinRate(nb.peerId, now)) {
      this.signalsDropped += 1;
      return;
    }
    if (msg.to === this.ownId) {
      this.outbox.emit({ kind: "PeerSignal", fromPeer: msg.from, via: nb.peerId, payload: msg.payload });
      return;
    }
    const target = this.nbrs.get(msg.to);
    if (target === undefined || target === nb) {
      this.signalsDropped += 1;
      return;
    }
    const relayed = { type: "signal", to: msg.to, from: nb.peerId, payload: msg.payload };
    this.outbox.send(target, encodeMessage(relayed));
    this.signalsRelayed += 1;
  }

  withinRate(peerId, now) {
    let w = this.signalWindow.get(peerId) ?? { startS: now, taken: 0 };
    if (now - w.startS >= SIGNAL_WINDOW_S) w = { startS: now, taken: 0 };
    w.taken += 1;
    this.signalWindow.set(peerId, w);
    return w.taken <= this.config.exchangeMaxSignalsPerS;
  }
}
