// Chunk storage: verified headers, verified pieces, a sliding window of seqs.
//
// Port of streamer/swarm/chunks.py, with one difference: signature checks are asynchronous in the
// browser, so the store does not verify headers itself; the swarm core adds a header only after
// its signature was checked (see verifying.js). Rule: nothing enters the store unverified - a header
// only once its signature held, a piece only if its SHA-256 matches that header. So whatever the
// store holds may be played and forwarded at once, piece by piece.

import { pieceOk } from "./chunkheader.js";

export const PieceResult = Object.freeze({
  NEW: "new",
  DUPLICATE: "duplicate",
  FORGED: "forged",
  NO_HEADER: "no_header",
  /** The piece's count field disagrees with the signed header: a malformed message. */
  MISMATCH: "mismatch",
});

export function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** One chunk being received (or complete): its verified header and verified pieces. */
export class ChunkBuffer {
  constructor(header, pieces, haveCount = 0) {
    this.header = header;
    /** Uint8Array or null per piece index. */
    this.pieces = pieces;
    this.haveCount = haveCount;
    /** We stopped fetching it (played past it): do not make neighbours wait for its pieces. */
    this.abandoned = false;
  }

  get complete() {
    return this.haveCount === this.pieces.length;
  }

  bits() {
    return this.pieces.map((p) => p !== null);
  }

  missing() {
    const out = [];
    this.pieces.forEach((p, i) => {
      if (p === null) out.push(i);
    });
    return out;
  }

  /** The whole chunk as one byte array (complete chunks only). */
  data() {
    let size = 0;
    for (const p of this.pieces) if (p !== null) size += p.length;
    const out = new Uint8Array(size);
    let at = 0;
    for (const p of this.pieces) {
      if (p !== null) {
        out.set(p, at);
        at += p.length;
      }
    }
    return out;
  }
}

/** Chunks by seq, from a floor up; everything below the floor is forgotten. */
export class ChunkStore {
  constructor() {
    this.chunks = new Map();
    this.floorSeq = 0;
    /** Newest seq whose header verified: the anchor for "far ahead" checks. */
    this.newestSeq = null;
    /**
     * Bumped by every change of what the store holds (a chunk, a piece, an abandon, an
     * eviction): what is derived from it may be kept while this stays the same.
     */
    this.version = 0;
  }

  get(seq) {
    return this.chunks.get(seq) ?? null;
  }

  [Symbol.iterator]() {
    return this.chunks.values();
  }

  isComplete(seq) {
    const chunk = this.chunks.get(seq);
    return chunk !== undefined && chunk.complete;
  }

  /** The stream's rate from the headers held (null without a header of any duration). */
  streamBytesPerS() {
    let size = 0;
    let durationUs = 0;
    for (const c of this.chunks.values()) {
      size += c.header.totalSize;
      durationUs += c.header.durationUs;
    }
    return durationUs > 0 ? size / (durationUs / 1e6) : null;
  }

  completeSeqs() {
    const out = [];
    for (const [s, c] of this.chunks) if (c.complete) out.push(s);
    return out.sort((a, b) => a - b);
  }

  /**
   * seq's media start: from its header; else the end of the nearest header below plus nominalS
   * per chunk between; else the nearest header above less nominalS per chunk; null when no
   * header is known. Chunks may be of any length, so an estimate never extrapolates further
   * than from the nearest header.
   */
  mediaStartS(seq, nominalS) {
    const chunk = this.chunks.get(seq);
    if (chunk !== undefined) return Number(chunk.header.startUs) / 1e6;
    let below = null;
    let above = null;
    for (const [s, c] of this.chunks) {
      if (s < seq && (below === null || s > below.seq)) below = c.header;
      else if (s > seq && (above === null || s < above.seq)) above = c.header;
    }
    if (below !== null) {
      const endS = (Number(below.startUs) + Number(below.durationUs)) / 1e6;
      return endS + (seq - below.seq - 1) * nominalS;
    }
    if (above !== null) return Number(above.startUs) / 1e6 - (above.seq - seq) * nominalS;
    return null;
  }

  /**
   * Store a header whose signature the caller has checked.
   * True: newly stored; null: already known or below the window (no-op).
   */
  addVerifiedHeader(header) {
    if (this.chunks.has(header.seq) || header.seq < this.floorSeq) return null;
    const count = header.pieceHashes.length;
    this.chunks.set(header.seq, new ChunkBuffer(header, new Array(count).fill(null)));
    this.version += 1;
    if (this.newestSeq === null || header.seq > this.newestSeq) this.newestSeq = header.seq;
    return true;
  }

  /** The source stores what it produced and signed itself. */
  addOwn(header, pieces) {
    const chunk = new ChunkBuffer(header, pieces.slice(), pieces.length);
    this.chunks.set(header.seq, chunk);
    this.version += 1;
    if (this.newestSeq === null || header.seq > this.newestSeq) this.newestSeq = header.seq;
    return chunk;
  }

  addPiece(seq, index, count, payload) {
    const chunk = this.chunks.get(seq);
    if (chunk === undefined) return PieceResult.NO_HEADER;
    if (count !== chunk.pieces.length) return PieceResult.MISMATCH;
    if (chunk.pieces[index] !== null) return PieceResult.DUPLICATE;
    if (!pieceOk(chunk.header, index, payload)) return PieceResult.FORGED;
    chunk.pieces[index] = payload;
    chunk.haveCount += 1;
    this.version += 1;
    return PieceResult.NEW;
  }

  /** We stop fetching chunk (it stays, with the pieces we hold, until evicted). */
  abandon(chunk) {
    chunk.abandoned = true;
    this.version += 1;
  }

  /** Forget chunks below floorSeq; returns the evicted seqs. */
  evictBelow(floorSeq) {
    if (floorSeq <= this.floorSeq) return [];
    this.floorSeq = floorSeq;
    const gone = [];
    for (const s of this.chunks.keys()) if (s < floorSeq) gone.push(s);
    for (const s of gone) this.chunks.delete(s);
    this.version += 1;
    return gone;
  }
}
