// What a peer knows about each neighbour: role, what it has, measured throughput, requests.
//
// Port of streamer/swarm/neighbours.py. All state about one neighbour lives in its Neighbour
// object, so dropping a neighbour is one delete; throughput is measured only while we wait on it
// (idle time is not slowness).

import { Capability, Role } from "./wire.js";

/**
 * Throughput of a neighbour towards us, in bytes/s, measured over busy periods (EWMA). A sample
 * spans SAMPLE_S of busy time or more, summed over as many busy periods as it takes (each from
 * its first request to its last byte): a period is often one round trip, and dropping those kept
 * a meter at its first, low sample for good (streamer/swarm/neighbours.py says more).
 */
export class RateMeter {
  static SAMPLE_S = 0.25;
  static ALPHA = 0.3;

  constructor() {
    this.rateBytesPerS = null;
    this.sinceS = null; // when the current busy period began (null: idle)
    this.busyS = 0; // busy time of earlier periods not yet in a sample
    this.bytes = 0;
    this.lastS = null; // when the last byte came
  }

  /** A request is outstanding from now on (no-op if one already was). */
  busy(now) {
    if (this.sinceS === null) this.sinceS = now;
  }

  /** Nothing is outstanding any more: the period ended with its last byte. */
  idle() {
    if (this.sinceS !== null && this.lastS !== null && this.lastS > this.sinceS) {
      this.busyS += this.lastS - this.sinceS;
    }
    this.sinceS = null;
  }

  received(sizeBytes, now) {
    if (this.sinceS === null) return;
    this.bytes += sizeBytes;
    this.lastS = now;
    const elapsed = this.busyS + (now - this.sinceS);
    if (elapsed >= RateMeter.SAMPLE_S) {
      const sample = this.bytes / elapsed;
      const old = this.rateBytesPerS;
      this.rateBytesPerS = old === null ? sample : old + RateMeter.ALPHA * (sample - old);
      this.sinceS = now;
      this.busyS = 0;
      this.bytes = 0;
    }
  }
}

/**
 * What an uplink can carry: the best recent rate of the upload counter over intervals in which
 * uploads waited their turn (the uplink, not the demand, set the pace). Sampled over SAMPLE_S or
 * more; the best decays by DECAY per such sample. null until an interval was backlogged: an
 * uplink nobody has kept busy yet is not known to be narrow.
 */
export class UplinkMeter {
  static SAMPLE_S = 1.0;
  static DECAY = 0.9;

  constructor() {
    this.capacityBytesPerS = null;
    this.sinceS = null;
    this.sinceBytes = 0;
    this.backlogged = false;
  }

  /** totalBytes uploaded so far; backlogged: uploads are waiting now. */
  sample(totalBytes, backlogged, now) {
    if (this.sinceS === null) {
      this.sinceS = now;
      this.sinceBytes = totalBytes;
      return;
    }
    this.backlogged = this.backlogged || backlogged;
    const elapsedS = now - this.sinceS;
    if (elapsedS < UplinkMeter.SAMPLE_S) return;
    if (this.backlogged) {
      const rate = (totalBytes - this.sinceBytes) / elapsedS;
      const old = this.capacityBytesPerS;
      this.capacityBytesPerS = old === null ? rate : Math.max(rate, old * UplinkMeter.DECAY);
    }
    this.sinceS = now;
    this.sinceBytes = totalBytes;
    this.backlogged = backlogged;
  }
}

/**
 * What our uplink delivers when it has work: from the bytes the transport has delivered
 * (acknowledged: the driver's count, SwarmPeer.uplinkDelivered), the rate over each SAMPLE_S or
 * more in which, at half the looks or more, a request waited in our upload queue for something we
 * hold or the transport held a piece's worth or more not yet acknowledged; bestBytesPerS is the
 * best of the last SAMPLES such rates (null until there are FIRST_SAMPLES of them: the first
 * verdict comes sooner, every later one from SAMPLES). See neighbours.py
 * for why delivered, not handed, bytes.
 */
export class DeliveredUplinkMeter {
  static SAMPLE_S = 1.0;
  static SAMPLES = 5;
  static FIRST_SAMPLES = 3;

  constructor() {
    this.rates = [];
    this.sinceS = null;
    this.sinceBytes = 0;
    this.looks = 0;
    this.pressedLooks = 0;
  }

  get bestBytesPerS() {
    const enough = this.rates.length >= DeliveredUplinkMeter.FIRST_SAMPLES;
    return enough ? Math.max(...this.rates) : null;
  }

  /** deliveredBytes: every byte the transport delivered so far; pressed: the uplink has work. */
  sample(deliveredBytes, pressed, now) {
    if (this.sinceS === null) {
      this.start(deliveredBytes, now);
      return;
    }
    this.looks += 1;
    if (pressed) this.pressedLooks += 1;
    const elapsedS = now - this.sinceS;
    if (elapsedS < DeliveredUplinkMeter.SAMPLE_S) return;
    if (2 * this.pressedLooks >= this.looks) {
      this.rates.push(Math.max(0, deliveredBytes - this.sinceBytes) / elapsedS);
      if (this.rates.length > DeliveredUplinkMeter.SAMPLES) this.rates.shift();
    }
    this.start(deliveredBytes, now);
  }

  start(deliveredBytes, now) {
    this.sinceS = now;
    this.sinceBytes = deliveredBytes;
    this.looks = 0;
    this.pressedLooks = 0;
  }
}

/**
 * How soon a neighbour answers a request when nothing else of ours is queued there: a low quantile
 * of its last few responses (request sent -> first piece or header back; not the shortest, which
 * a piece already on its way when we asked for it again makes too short). That is the round trip
 * plus the queue of its uplink: the least a request to it can take. Timers that decide a piece is
 * late are measured from it, so a far neighbour is not given up on before its answer could come.
 */
export class ResponseMeter {
  static SAMPLES = 8;

  constructor() {
    this.samples = [];
    this.baseS = null;
    /**
     * The upper quartile of the same responses: as long as a request to it usually takes when
     * its queue is long. A piece later than that is stuck there, not queued.
     */
    this.slowS = null;
  }

  sample(responseS) {
    this.samples.push(Math.max(0, responseS));
    if (this.samples.length > ResponseMeter.SAMPLES) this.samples.shift();
    const ordered = [...this.samples].sort((a, b) => a - b);
    this.baseS = ordered[Math.trunc((ordered.length - 1) / 4)];
    this.slowS = ordered[Math.trunc(((ordered.length - 1) * 3) / 4)];
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
    /** seq -> time until which we do not ask it for seq again (it answered absent). */
    this.notFrom = new Map();
    /**
     * seq -> time until which it is asked for seq only as a last resort: we gave up a request for
     * seq there (silent, or too slow for the deadline).
     */
    this.gaveUp = new Map();
    /**
     * Pieces of one chunk we asked it for, by seq: {seq, pieces: Set (still to come),
     * headerPending, requestedS, lastProgressS, strikeOnTimeout (it held what we asked for, so
     * silence is a stall), askedS (Map piece -> when we asked for it)}.
     */
    this.assignments = new Map();
    this.meter = new RateMeter();
    this.response = new ResponseMeter();
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
    /** Source only: from our super-seeding have to its request for those pieces. */
    this.seedResponse = new ResponseMeter();
    /** Small messages to send, oldest first. */
    this.control = [];
    /**
     * Requests it made of us, also in the core's one upload queue: [{peerId, seq,
     * pieces: number[], headerPending, order (arrival), reservedBytes, queuedS (arrival time)}].
     */
    this.serving = [];
    this.headersSent = new Set();
    this.bytesReceived = 0;
    this.bytesSent = 0;
    /**
     * The driver said our link to it takes no more data for now (setLinkFull): its requests
     * wait in the upload queue without holding an upload slot.
     */
    this.linkFull = false;
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

  /**
   * A piece (or the header) of assignment a came; askedS: when we asked for it. Nothing of a had
   * come since we asked: the wait was one response time.
   */
  progress(a, askedS, now) {
    if (askedS >= a.lastProgressS) this.response.sample(now - askedS);
    a.lastProgressS = now;
  }

  /**
   * How long a piece asked of it takes to come when it serves us alone: its response time
   * (initialResponseS until one is measured).
   */
  expectedWaitS(initialResponseS) {
    const baseS = this.response.baseS;
    return baseS === null ? initialResponseS : baseS;
  }

  /**
   * How many more pieces we may ask of it now: its measured rate x (pipeline + its response
   * time), so that what is in flight covers the round trip; at least one piece (minInflightBytes
   * before a rate is measured).
   */
  roomPieces(pipelineS, minInflightBytes, pieceBytes) {
    const rate = this.meter.rateBytesPerS ?? 0;
    const windowS = pipelineS + (this.response.baseS ?? 0);
    // Once a rate is measured, one piece is the floor: on a slow uplink shared by seven
    // requesters, two pieces each queued 2.4 s of data there.
    const floor = rate ? pieceBytes : minInflightBytes;
    const allowedBytes = Math.max(floor, Math.floor(rate * windowS));
    return Math.floor(allowedBytes / Math.max(1, pieceBytes)) - this.inflightPieces();
  }

  forgetBelow(floorSeq) {
    for (const s of this.complete) if (s < floorSeq) this.complete.delete(s);
    for (const table of [
      this.partial,
      this.notFrom,
      this.gaveUp,
      this.announcedS,
      this.sentMask,
      this.extraBytes,
    ]) {
      for (const s of table.keys()) if (s < floorSeq) table.delete(s);
    }
  }
}
