// What a peer knows about each neighbour: role, what it has, measured throughput, requests.
//
// Port of streamer/swarm/neighbours.py. All state about one neighbour lives in its Neighbour
// object, so dropping a neighbour is one delete; throughput is measured only while we wait on it
// (idle time is not slowness).

import { Capability, Role } from "./wire.js";

/** Throughput of a neighbour towards us, in bytes/s, measured over busy periods (EWMA). */
export class RateMeter {
  static SAMPLE_S = 0.25;
  static ALPHA = 0.3;

  constructor() {
    this.rateBytesPerS = null;
    this.sinceS = null;
    this.bytes = 0;
  }

  /** A request is outstanding from now on (no-op if one already was). */
  busy(now) {
    if (this.sinceS === null) {
      this.sinceS = now;
      this.bytes = 0;
    }
  }

  idle() {
    this.sinceS = null;
  }

  received(sizeBytes, now) {
    if (this.sinceS === null) return;
    this.bytes += sizeBytes;
    const elapsed = now - this.sinceS;
    if (elapsed >= RateMeter.SAMPLE_S) {
      const sample = this.bytes / elapsed;
      const old = this.rateBytesPerS;
      this.rateBytesPerS = old === null ? sample : old + RateMeter.ALPHA * (sample - old);
      this.sinceS = now;
      this.bytes = 0;
    }
  }
}

export class Neighbour {
  constructor(peerId, connectedS) {
    this.peerId = peerId;
    this.connectedS = connectedS;
    this.role = null;
    this.capabilities = Capability.NONE;
    this.helloReceived = false;
    /** Seqs it holds in full (buffer map + haves). */
    this.complete = new Set();
    /** Seqs it is receiving: seq -> BigInt mask of the pieces its haves said it holds. */
    this.partial = new Map();
    /** seq -> when its first have (or header) of seq reached us (it had verified the header). */
    this.announcedS = new Map();
    /** seq -> time until which we do not ask it for seq again (absent, timed out). */
    this.notFrom = new Map();
    /**
     * Pieces of one chunk we asked it for, by seq: {seq, pieces: Set (still to come),
     * headerPending, requestedS, lastProgressS, strikeOnTimeout (it held what we asked for, so
     * silence is a stall), askedS (Map piece -> when we asked for it)}.
     */
    this.assignments = new Map();
    this.meter = new RateMeter();
    this.strikes = 0;
    this.lastUsefulS = connectedS;
    /**
     * When its last header or piece (of any seq) reached us: a neighbour that sends us data for
     * other chunks is busy, not stalled.
     */
    this.lastDataS = -1;
    /** Its hello arrived with the UPLOAD capability: it may be asked for pieces. */
    this.uploads = false;
    /** Seqs whose have we still owe it (coalesced: one have per seq per haveIntervalS). */
    this.haveDue = new Set();
    /** Earliest time of our next have to it. */
    this.haveNextS = 0;
    /** Source only: seq -> BigInt mask of the pieces we sent it. */
    this.sentMask = new Map();
    /**
     * Source only: seq -> bytes of copies beyond the first queued or sent to it (its share of
     * the copy budget: see sourceMaxShare).
     */
    this.extraBytes = new Map();
    /**
     * Source only: when a have from it last showed a piece we never sent it - it gets data from
     * peers, so it is linked into the swarm (a peer everyone dropped, such as a liar, is not).
     */
    this.fedByPeersS = null;
    /** Small messages to send, oldest first. */
    this.control = [];
    /**
     * Requests it made of us, also in the core's one upload queue: [{peerId, seq,
     * pieces: number[], headerPending, order (arrival), reservedBytes}].
     */
    this.serving = [];
    this.headersSent = new Set();
    this.bytesReceived = 0;
    this.bytesSent = 0;
  }

  get isSource() {
    return this.role === Role.SOURCE;
  }

  holds(seq) {
    return this.complete.has(seq) || this.partial.has(seq);
  }

  /** Pieces of seq it surely holds, as a BigInt mask (-1n: all of them). */
  knownMask(seq) {
    if (this.complete.has(seq)) return -1n;
    return this.partial.get(seq) ?? 0n;
  }

  inflightPieces() {
    let total = 0;
    for (const a of this.assignments.values()) total += a.pieces.size + (a.headerPending ? 1 : 0);
    return total;
  }

  /** How many more pieces we may ask of it now (measured rate x pipeline, with a floor). */
  roomPieces(pipelineS, minInflightBytes, pieceBytes) {
    const rate = this.meter.rateBytesPerS ?? 0;
    const allowedBytes = Math.max(minInflightBytes, Math.floor(rate * pipelineS));
    return Math.floor(allowedBytes / Math.max(1, pieceBytes)) - this.inflightPieces();
  }

  forgetBelow(floorSeq) {
    for (const s of this.complete) if (s < floorSeq) this.complete.delete(s);
    for (const table of [
      this.partial,
      this.notFrom,
      this.announcedS,
      this.sentMask,
      this.extraBytes,
    ]) {
      for (const s of table.keys()) if (s < floorSeq) table.delete(s);
    }
  }
}
