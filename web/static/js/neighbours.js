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
    /** Seqs it is receiving: seq -> pieces it had at its last have. */
    this.partial = new Map();
    /** seq -> time until which we do not ask it for seq again (absent, timed out). */
    this.notFrom = new Map();
    /** seq -> {seq, pieces: Set|null, requestedS, lastProgressS, estimateBytes}. */
    this.assignments = new Map();
    this.meter = new RateMeter();
    this.strikes = 0;
    this.lastUsefulS = connectedS;
    /** Small messages to send, oldest first. */
    this.control = [];
    /** Requests it made of us: [{seq, pieces: number[], headerPending, reservedBytes}]. */
    this.serving = [];
    this.headersSent = new Set();
    this.bytesReceived = 0;
    this.bytesSent = 0;
  }

  get isSource() {
    return this.role === Role.SOURCE;
  }

  get uploads() {
    return this.helloReceived && (this.capabilities & Capability.UPLOAD) !== 0;
  }

  holds(seq) {
    return this.complete.has(seq) || this.partial.has(seq);
  }

  inflightBytes() {
    let total = 0;
    for (const a of this.assignments.values()) total += a.estimateBytes;
    return total;
  }

  /** How many more bytes we may ask of it now (measured rate x pipeline, with a floor). */
  capacityBytes(pipelineS, minInflightBytes) {
    const rate = this.meter.rateBytesPerS ?? 0;
    const allowed = Math.max(minInflightBytes, Math.floor(rate * pipelineS));
    return allowed - this.inflightBytes();
  }

  forgetBelow(floorSeq) {
    for (const s of this.complete) if (s < floorSeq) this.complete.delete(s);
    for (const table of [this.partial, this.notFrom]) {
      for (const s of table.keys()) if (s < floorSeq) table.delete(s);
    }
  }
}
