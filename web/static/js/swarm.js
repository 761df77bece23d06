// SwarmPeer: one peer's sans-I/O swarm state machine, the JavaScript port of
// streamer/swarm/peer.py. The page's player, signaling and WebRTC code drive it; node tests drive
// it with explicit time. No DOM, no timers, no WebRTC, no clock in here: every call takes `now`
// (seconds; pass Date.now() / 1000 so that lag against the source's release time means something).
//
// Driver API (same as Python's SwarmPeer, camelCase):
//
//   const core = new SwarmPeer({role: Role.VIEWER, now, rng: seededRandom(seed), config: {...}});
//   core.addNeighbour(peerId, now) -> bool      // a data channel opened; false = full, close it
//   core.removeNeighbour(peerId, now)           // the channel closed
//   core.receive(peerId, bytes, now)            // one binary message (Uint8Array or ArrayBuffer)
//   core.headerVerified(header, ok, now)        // the answer to a VerifyHeader event (see below)
//   core.publishChunk(header, data, now)        // source only, with a header signChunkHeader made
//   core.takeReady() -> Set<peerId>             // links with something new to send
//   core.nextControlMessage(peerId) -> Uint8Array | null   // send all of these, always
//   core.nextDataMessage(peerId, now) -> Uint8Array | null // only while the link has room
//                                               // (bufferedAmount low / upload cap not reached)
//   core.nextTimer() -> number | null           // call handleTimer(now) at that time
//   core.handleTimer(now)
//   core.popEvents() -> [{kind, ...}]           // see the event kinds below
//   core.stats() -> {startup_s, continuity, lag_s_p50, lag_s_p95, chunks_played, chunks_missed,
//                    bytes_from_source, bytes_from_peers, bytes_uploaded, ...}   (Python's names)
//   core.leave() -> Uint8Array                  // the bye to send to everyone on shutdown
//
// Events (popEvents): {kind: "VerifyHeader", seq, header}; {kind: "ChunkComplete", seq, header,
// data}; {kind: "ChunkPlayed", seq, lagS, data} (append data to the SourceBuffer now);
// {kind: "ChunkMissed", seq}; {kind: "DropNeighbour", peerId, reason, bye} (send bye unless null,
// then close; the core forgot the peer already); {kind: "WantNeighbours", count}.
//
// Signature checks are asynchronous in WebCrypto, so the core never waits on one. When a chunk
// header with new bytes arrives, the core emits VerifyHeader and keeps the header (and the pieces
// of that chunk that arrive meanwhile, bounded) aside, unstored. The driver checks it, e.g.
//     const ok = await verifier.verify(event.header);   // chunkheader.js HeaderVerifier
//     core.headerVerified(event.header, ok, Date.now() / 1000);
// then drains the core as after any input. ok: the header is stored and the held pieces are
// checked by hash (synchronously, sha2.js) and stored; not ok: every neighbour that sent those
// bytes is dropped as a forger. For tests or a synchronous verifier, pass
// `verifyHeaderSync: (header) => boolean` to the constructor: no VerifyHeader events then.
//
// After every call that feeds the core (receive, headerVerified, handleTimer, publishChunk,
// add/removeNeighbour) the driver drains popEvents(), sends the control messages of every peer in
// takeReady(), pumps data messages while each link has room, and re-arms its timer from
// nextTimer(). Flow control is the driver's: the core produces a piece only when asked.
//
// Rules this module never breaks: a malformed or hostile message drops only its sender (a
// ProtocolError inside receive becomes a DropNeighbour event, never an exception to the driver);
// nothing unverified is stored, played or forwarded; randomness only from the injected rng.

import {
  ALL_PIECES,
  ByeReason,
  Capability,
  MAX_BUFFER_MAP_BITS,
  PROTOCOL_VERSION,
  ProtocolError,
  Role,
  decodeMessage,
  encodeMessage,
} from "./wire.js";
import { pieceLength, splitPieces } from "./chunkheader.js";
import { ChunkStore, PieceResult, sameBytes } from "./chunkstore.js";
import { Neighbour } from "./neighbours.js";
import { Playback } from "./playback.js";
import { planRequests, seededRandom } from "./scheduler.js";

/** Tunables, with units in their names: the defaults of streamer/swarm/config.py. */
export const DEFAULT_CONFIG = Object.freeze({
  chunkDurationS: 1.0,
  pieceSizeBytes: 16384,
  defaultChunkBytes: 131072,
  targetNeighbours: 8,
  maxNeighbours: 12,
  wantNeighboursIntervalS: 2.0,
  startBehindChunks: 1,
  fetchAheadChunks: 8,
  urgentS: 1.5,
  keepBehindChunks: 6,
  maxAheadChunks: 64,
  requestTimeoutS: 1.0,
  pipelineS: 1.0,
  minInflightBytes: 131072,
  maxServeQueue: 64,
  stallStrikes: 3,
  tickS: 0.25,
  sourceFanout: 2,
  sourceAnnounceDelayS: 0.5,
  sourceMaxCopies: 1.9,
  sourceKeepChunks: 16,
  /** JS only: pieces held while their chunk's header is being verified, in bytes. */
  maxHeldPieceBytes: 8 * 1024 * 1024,
});

/** Nearest-rank percentile; null for no values. */
export function percentile(values, fraction) {
  if (values.length === 0) return null;
  const ordered = values.slice().sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(fraction * ordered.length));
  return ordered[rank - 1];
}

/** Sorted indices -> [[first, count]] of contiguous runs. */
function runs(indices) {
  const out = [];
  for (const i of indices) {
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === i) last[1] += 1;
    else out.push([i, 1]);
  }
  return out;
}

const allTrue = (n) => new Array(n).fill(true);
const ROLE_NAMES = ["source", "relay", "viewer"];

export class SwarmPeer {
  /**
   * @param {object} options
   * @param {number} options.role  Role.SOURCE, Role.RELAY or Role.VIEWER
   * @param {number} options.now  seconds
   * @param {object} [options.config]  overrides of DEFAULT_CONFIG
   * @param {() => number} [options.rng]  floats in [0, 1); seededRandom(0) by default
   * @param {boolean} [options.upload]  serve requests (the source always does)
   * @param {(header) => boolean} [options.verifyHeaderSync]  skip VerifyHeader events
   */
  constructor({ role, now, config = {}, rng, upload = true, verifyHeaderSync = null }) {
    if (![Role.SOURCE, Role.RELAY, Role.VIEWER].includes(role)) {
      throw new RangeError(`unknown role ${role}`);
    }
    this.role = role;
    this.config = { ...DEFAULT_CONFIG, ...config };
    this.rng = rng ?? seededRandom(0);
    this.upload = upload || role === Role.SOURCE;
    this.verifyHeaderSync = verifyHeaderSync;
    this.store = new ChunkStore();
    this.nbrs = new Map();
    this.assigned = new Map(); // seq -> peerId we asked for it
    this.events = [];
    this.ready = new Set();
    this.dirty = true;
    this.now = now;
    this.newestHeard = null;
    this.nextWantS = role === Role.SOURCE ? null : now;
    this.workPending = false;
    this.playback =
      role === Role.SOURCE
        ? null
        : new Playback({
            chunkDurationS: this.config.chunkDurationS,
            startBehindChunks: this.config.startBehindChunks,
            joinedS: now,
          });
    // headers being verified: seq -> [{header, senders: Set<peerId>}]
    this.pendingHeaders = new Map();
    // pieces held until their chunk's header is verified: seq -> [{peerId, msg, sizeBytes}]
    this.heldPieces = new Map();
    this.heldBytes = 0;
    // source state
    this.announceLater = new Map(); // seq -> [whenS, peerIds]
    this.sourceReserved = new Map(); // seq -> bytes promised
    this.fanoutTurn = 0;
    // stats
    this.bytesFromSource = 0;
    this.bytesFromPeers = 0;
    this.bytesUploaded = 0;
    this.bytesDuplicate = 0;
    this.streamBytes = 0;
    this.drops = {};
  }

  // ---------------------------------------------------------------- neighbours

  get neighbourIds() {
    return [...this.nbrs.keys()];
  }

  neighbour(peerId) {
    return this.nbrs.get(peerId) ?? null;
  }

  hasRoom() {
    return this.nbrs.size < this.config.maxNeighbours;
  }

  /** A link to peerId is open. False (and nothing changes) when we are full. */
  addNeighbour(peerId, now) {
    if (this.nbrs.has(peerId)) return true;
    if (!this.hasRoom()) return false;
    this.now = now;
    const nb = new Neighbour(peerId, now);
    this.nbrs.set(peerId, nb);
    const caps = Capability.PARTIAL | (this.upload ? Capability.UPLOAD : Capability.NONE);
    nb.control.push(
      encodeMessage({
        type: "hello",
        version: PROTOCOL_VERSION,
        role: this.role,
        capabilities: caps,
      }),
    );
    const have = this.store.completeSeqs();
    if (have.length) {
      const newest = have[have.length - 1];
      const base = Math.max(have[0], newest - MAX_BUFFER_MAP_BITS + 1);
      const members = new Set(have);
      const bits = [];
      for (let s = base; s <= newest; s++) bits.push(members.has(s));
      nb.control.push(encodeMessage({ type: "buffer_map", baseSeq: base, bits }));
    }
    this.ready.add(peerId);
    return true;
  }

  /** The link to peerId closed (or the driver gave up on it). Its requests go elsewhere. */
  removeNeighbour(peerId, now) {
    this.now = now;
    const nb = this.nbrs.get(peerId);
    if (nb === undefined) return;
    this.nbrs.delete(peerId);
    for (const seq of nb.assignments.keys()) {
      if (this.assigned.get(seq) === peerId) this.assigned.delete(seq);
    }
    for (const item of nb.serving) this.release(item);
    this.ready.delete(peerId);
    this.dirty = true;
    this.after(now);
  }

  /** The bye to send to every neighbour when this peer shuts down. */
  leave() {
    return encodeMessage({ type: "bye", reason: ByeReason.SHUTDOWN, text: "leaving" });
  }

  // ---------------------------------------------------------------- input

  /** One message from peerId. A malformed one drops peerId (see popEvents); never throws. */
  receive(peerId, data, now) {
    this.now = now;
    const nb = this.nbrs.get(peerId);
    if (nb === undefined) return;
    try {
      const msg = decodeMessage(data);
      this.handle(nb, msg, data.byteLength, now);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.drop(nb, `protocol error: ${err.message}`, ByeReason.PROTOCOL_ERROR);
    }
    this.after(now);
  }

  /** The driver's answer to a VerifyHeader event: was this header's signature the source's? */
  headerVerified(header, ok, now) {
    this.now = now;
    const list = this.pendingHeaders.get(header.seq);
    const at = list ? list.findIndex((p) => sameBytes(p.header.raw, header.raw)) : -1;
    if (at < 0) return; // answered already, or the chunk fell out of the window meanwhile
    const [pending] = list.splice(at, 1);
    if (list.length === 0) this.pendingHeaders.delete(header.seq);
    this.settleHeader(pending, ok, now);
    this.after(now);
  }

  /**
   * Source only: offer a freshly released chunk. `header` is signChunkHeader's (chunkheader.js,
   * async WebCrypto signing, so the driver signs first); data is the chunk's bytes.
   */
  publishChunk(header, data, now) {
    if (this.role !== Role.SOURCE) throw new Error("only the source publishes chunks");
    this.now = now;
    const seq = header.seq;
    this.store.addOwn(header, splitPieces(data, header.pieceSize));
    this.streamBytes += data.length;
    const candidates = [...this.nbrs.values()]
      .filter((nb) => nb.uploads && !nb.isSource)
      .sort((a, b) => {
        const ra = a.role !== Role.RELAY ? 1 : 0;
        const rb = b.role !== Role.RELAY ? 1 : 0;
        return ra - rb || (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0);
      });
    const relays = candidates.filter((nb) => nb.role === Role.RELAY);
    let others = candidates.filter((nb) => nb.role !== Role.RELAY);
    if (others.length) {
      const turn = this.fanoutTurn % others.length;
      others = others.slice(turn).concat(others.slice(0, turn));
      this.fanoutTurn += 1;
    }
    const first = relays.concat(others).slice(0, this.config.sourceFanout);
    const have = encodeMessage({ type: "have", seq, pieces: allTrue(header.pieceHashes.length) });
    for (const nb of first) this.sendControl(nb, have);
    const chosen = new Set(first.map((nb) => nb.peerId));
    const later = [...this.nbrs.keys()].filter((pid) => !chosen.has(pid));
    if (later.length) {
      this.announceLater.set(seq, [now + this.config.sourceAnnounceDelayS, later]);
    }
    this.store.evictBelow(seq - this.config.sourceKeepChunks + 1);
    this.after(now);
  }

  // ---------------------------------------------------------------- output

  /** Next small message for peerId (hello, buffer map, have, request, cancel, absent). */
  nextControlMessage(peerId) {
    const nb = this.nbrs.get(peerId);
    if (nb === undefined || nb.control.length === 0) return null;
    const data = nb.control.shift();
    this.bytesUploaded += data.length;
    nb.bytesSent += data.length;
    return data;
  }

  /** Next header or piece for peerId; call it when that link has room to send. */
  nextDataMessage(peerId, now) {
    this.now = now;
    const nb = this.nbrs.get(peerId);
    if (nb === undefined) return null;
    while (nb.serving.length) {
      const out = this.serveOne(nb);
      if (out !== null) {
        this.bytesUploaded += out.length;
        nb.bytesSent += out.length;
        return out;
      }
      if (nb.serving.length === 0 || nb.serving.every((item) => this.waiting(item))) return null;
    }
    return null;
  }

  /** Peer ids that got new control messages or servable data since the last call. */
  takeReady() {
    const ready = this.ready;
    this.ready = new Set();
    return ready;
  }

  popEvents() {
    const events = this.events;
    this.events = [];
    return events;
  }

  // ---------------------------------------------------------------- timers

  /** When handleTimer wants to run next (null: only input can change anything). */
  nextTimer() {
    const times = [];
    for (const nb of this.nbrs.values()) {
      for (const a of nb.assignments.values()) {
        times.push(a.lastProgressS + this.config.requestTimeoutS);
      }
    }
    for (const [when] of this.announceLater.values()) times.push(when);
    if (this.nextWantS !== null && this.nbrs.size < this.config.targetNeighbours) {
      times.push(this.nextWantS);
    }
    const pb = this.playback;
    if (pb !== null && pb.started && pb.nextSeq !== null) {
      times.push(pb.deadline(pb.nextSeq, this.mediaStartS(pb.nextSeq), this.now));
    }
    if (this.workPending) times.push(this.now + this.config.tickS);
    return times.length ? Math.min(...times) : null;
  }

  handleTimer(now) {
    this.now = now;
    for (const nb of [...this.nbrs.values()]) {
      for (const [seq, a] of [...nb.assignments]) {
        if (this.nbrs.has(nb.peerId) && now - a.lastProgressS >= this.config.requestTimeoutS) {
          this.timeOut(nb, seq, now);
        }
      }
    }
    for (const [seq, [when, pids]] of [...this.announceLater]) {
      if (when > now) continue;
      this.announceLater.delete(seq);
      const chunk = this.store.get(seq);
      if (chunk === null) continue;
      const have = encodeMessage({ type: "have", seq, pieces: allTrue(chunk.pieces.length) });
      for (const pid of pids) {
        const target = this.nbrs.get(pid);
        if (target !== undefined && !target.complete.has(seq)) this.sendControl(target, have);
      }
    }
    if (
      this.nextWantS !== null &&
      now >= this.nextWantS &&
      this.nbrs.size < this.config.targetNeighbours
    ) {
      this.events.push({
        kind: "WantNeighbours",
        count: this.config.targetNeighbours - this.nbrs.size,
      });
      this.nextWantS = now + this.config.wantNeighboursIntervalS;
    }
    this.dirty = true;
    this.after(now);
  }

  // ---------------------------------------------------------------- stats

  /** Figures with the field names of `streamer watch --stats-json` (Python's, snake_case). */
  stats() {
    const pb = this.playback;
    const lags = pb ? pb.lagsS : [];
    return {
      role: ROLE_NAMES[this.role],
      startup_s: pb ? pb.startupS : null,
      continuity: pb ? pb.continuity : null,
      lag_s_p50: percentile(lags, 0.5),
      lag_s_p95: percentile(lags, 0.95),
      chunks_played: pb ? pb.played : 0,
      chunks_missed: pb ? pb.missed : 0,
      bytes_from_source: this.bytesFromSource,
      bytes_from_peers: this.bytesFromPeers,
      bytes_uploaded: this.bytesUploaded,
      bytes_duplicate: this.bytesDuplicate,
      stream_bytes: this.streamBytes,
      neighbours: this.nbrs.size,
      drops: { ...this.drops },
    };
  }

  // ---------------------------------------------------------------- message handling

  handle(nb, msg, sizeBytes, now) {
    switch (msg.type) {
      case "piece":
        this.onPiece(nb, msg, sizeBytes, now);
        break;
      case "have": {
        this.checkSeq(msg.seq, "have");
        if (msg.seq < this.store.floorSeq) return;
        if (msg.pieces.every(Boolean)) {
          nb.complete.add(msg.seq);
          nb.partial.delete(msg.seq);
        } else {
          nb.partial.set(msg.seq, msg.pieces.filter(Boolean).length);
        }
        this.heard(msg.seq);
        break;
      }
      case "request":
        this.onRequest(nb, msg);
        break;
      case "chunk_header":
        this.onHeader(nb, msg, now);
        break;
      case "buffer_map": {
        let newest = null;
        msg.bits.forEach((bit, i) => {
          if (bit) newest = msg.baseSeq + i;
        });
        if (newest !== null) {
          this.checkSeq(newest, "buffer map");
          msg.bits.forEach((bit, i) => {
            if (bit && msg.baseSeq + i >= this.store.floorSeq) nb.complete.add(msg.baseSeq + i);
          });
          this.heard(newest);
        }
        break;
      }
      case "hello":
        if (msg.version !== PROTOCOL_VERSION) {
          this.drop(nb, `protocol version ${msg.version}`, ByeReason.VERSION);
          return;
        }
        nb.helloReceived = true;
        nb.role = msg.role;
        nb.capabilities = msg.capabilities;
        break;
      case "cancel":
        this.onCancel(nb, msg);
        break;
      case "absent":
        this.onAbsent(nb, msg.seq, now);
        break;
      case "bye":
        this.forget(nb, `bye: ${msg.reason} ${msg.text}`.trim(), null);
        return;
      default:
        return; // unknown type: ignored, as the spec says
    }
    this.dirty = true;
  }

  /** A seq far beyond anything the source has signed is a lie or garbage. */
  checkSeq(seq, what) {
    const anchor = this.store.newestSeq;
    if (anchor !== null && seq > anchor + this.config.maxAheadChunks) {
      throw new ProtocolError(`${what}: seq ${seq} is far ahead of the stream (${anchor})`);
    }
  }

  heard(seq) {
    if (this.newestHeard === null || seq > this.newestHeard) this.newestHeard = seq;
    const pb = this.playback;
    if (pb === null) return;
    pb.hearOf(seq);
    // Never chase a start point that fell far behind before we could fetch it.
    if (!pb.started && pb.startSeq !== null && seq - pb.startSeq > pb.startBehindChunks + 2) {
      pb.startSeq = pb.nextSeq = seq - pb.startBehindChunks;
    }
  }

  onRequest(nb, msg) {
    this.checkSeq(msg.seq, "request");
    if (nb.serving.length >= this.config.maxServeQueue) {
      throw new ProtocolError(`more than ${this.config.maxServeQueue} outstanding requests`);
    }
    const absent = () =>
      this.sendControl(
        nb,
        encodeMessage({
          type: "absent",
          seq: msg.seq,
          firstIndex: msg.firstIndex,
          count: msg.count,
        }),
      );
    const chunk = this.store.get(msg.seq);
    if (!this.upload || chunk === null) {
      absent();
      return;
    }
    const last = Math.min(msg.firstIndex + msg.count, chunk.pieces.length);
    let indices = [];
    for (let i = msg.firstIndex; i < last; i++) indices.push(i);
    if (chunk.abandoned) indices = indices.filter((i) => chunk.pieces[i] !== null);
    if (indices.length === 0 && !msg.wantHeader) {
      absent();
      return;
    }
    let reserved = 0;
    if (this.role === Role.SOURCE) {
      for (const i of indices) reserved += pieceLength(chunk.header, i);
      const budget = this.config.sourceMaxCopies * chunk.header.totalSize;
      const already = this.sourceReserved.get(msg.seq) ?? 0;
      if (already + reserved > budget) {
        absent();
        return;
      }
      this.sourceReserved.set(msg.seq, already + reserved);
    }
    nb.serving.push({
      seq: msg.seq,
      pieces: indices,
      headerPending: msg.wantHeader,
      reservedBytes: reserved,
    });
    this.ready.add(nb.peerId);
  }

  onCancel(nb, msg) {
    const end = msg.firstIndex + msg.count;
    const inRange = (i) => msg.firstIndex <= i && i < end;
    for (const item of [...nb.serving]) {
      if (item.seq !== msg.seq) continue;
      const keep = item.pieces.filter((i) => !inRange(i));
      this.release(item, item.pieces.filter(inRange));
      item.pieces = keep;
      if (keep.length === 0) nb.serving.splice(nb.serving.indexOf(item), 1);
    }
  }

  onAbsent(nb, seq, now) {
    nb.complete.delete(seq);
    nb.partial.delete(seq);
    nb.notFrom.set(seq, now + 4 * this.config.requestTimeoutS);
    if (nb.assignments.delete(seq) && this.assigned.get(seq) === nb.peerId) {
      this.assigned.delete(seq);
    }
    if (nb.assignments.size === 0) nb.meter.idle();
  }

  onHeader(nb, header, now) {
    this.checkSeq(header.seq, "chunk header");
    const existing = this.store.get(header.seq);
    if (existing !== null && sameBytes(existing.header.raw ?? new Uint8Array(0), header.raw)) {
      this.headerAccepted(nb, header.seq, false, now);
      return;
    }
    if (existing === null && header.seq < this.store.floorSeq) return; // too old to matter
    let list = this.pendingHeaders.get(header.seq);
    const same = list?.find((p) => sameBytes(p.header.raw, header.raw));
    if (same) {
      same.senders.add(nb.peerId);
      return;
    }
    if (list === undefined) {
      list = [];
      this.pendingHeaders.set(header.seq, list);
    }
    if (list.length >= 4) {
      // several different headers for one seq at once: all but the genuine one are forged, and
      // there is no need to hold more than a few; this sender's copy waits for the next request.
      return;
    }
    const pending = { header, senders: new Set([nb.peerId]) };
    if (this.verifyHeaderSync !== null) {
      let ok = false;
      try {
        ok = this.verifyHeaderSync(header) === true;
      } catch {
        ok = false;
      }
      if (list.length === 0) this.pendingHeaders.delete(header.seq);
      this.settleHeader(pending, ok, now);
      return;
    }
    list.push(pending);
    this.events.push({ kind: "VerifyHeader", seq: header.seq, header });
  }

  /** A header's signature check came back: store it, or drop whoever sent it. */
  settleHeader(pending, ok, now) {
    const seq = pending.header.seq;
    if (!ok) {
      for (const pid of pending.senders) {
        const nb = this.nbrs.get(pid);
        if (nb !== undefined) this.drop(nb, `forged chunk header for seq ${seq}`, ByeReason.FORGED);
      }
      if (!this.pendingHeaders.has(seq)) this.releaseHeld(seq, null);
      return;
    }
    const existing = this.store.get(seq);
    if (existing !== null) {
      // A second valid header for one seq (the source re-signed): keep the first, as Python does.
      for (const pid of pending.senders) {
        const nb = this.nbrs.get(pid);
        if (nb !== undefined) this.headerAccepted(nb, seq, false, now);
      }
      return;
    }
    const isNew = this.store.addVerifiedHeader(pending.header) === true;
    let first = true;
    for (const pid of pending.senders) {
      const nb = this.nbrs.get(pid);
      if (nb !== undefined) {
        this.headerAccepted(nb, seq, isNew && first, now);
        first = false;
      }
    }
    if (isNew && first) {
      // every sender left meanwhile: still announce what we now hold
      this.heard(seq);
      this.announce(seq, this.store.get(seq).bits(), null);
    }
    this.releaseHeld(seq, isNew ? this.store.get(seq) : null);
    this.dirty = true;
  }

  /** Python's _on_header after a successful add (isNew) or for an already-known header. */
  headerAccepted(nb, seq, isNew, now) {
    const a = nb.assignments.get(seq);
    const chunk = this.store.get(seq);
    if (a !== undefined && chunk !== null) {
      a.lastProgressS = now;
      if (a.pieces === null) {
        a.pieces = new Set(chunk.missing());
        a.estimateBytes = a.pieces.size * chunk.header.pieceSize;
      }
    }
    if (isNew) {
      nb.lastUsefulS = now;
      this.heard(seq);
      if (chunk !== null) this.announce(seq, chunk.bits(), nb.peerId);
    }
    this.dirty = true;
  }

  /** Pieces held while seq's header was checked: feed them in now (chunk null: discard them). */
  releaseHeld(seq, chunk) {
    const held = this.heldPieces.get(seq);
    if (held === undefined) return;
    this.heldPieces.delete(seq);
    for (const h of held) {
      this.heldBytes -= h.msg.payload.length;
      const nb = this.nbrs.get(h.peerId);
      if (chunk === null || nb === undefined) continue;
      try {
        this.onPiece(nb, h.msg, h.sizeBytes, this.now, true);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.drop(nb, `protocol error: ${err.message}`, ByeReason.PROTOCOL_ERROR);
      }
    }
  }

  /** Hold a piece whose chunk header is being verified; false when it cannot be held. */
  holdPiece(nb, msg, sizeBytes) {
    if (!this.pendingHeaders.has(msg.seq)) return false;
    if (this.heldBytes + msg.payload.length > this.config.maxHeldPieceBytes) return false;
    let held = this.heldPieces.get(msg.seq);
    if (held === undefined) {
      held = [];
      this.heldPieces.set(msg.seq, held);
    }
    if (held.some((h) => h.msg.index === msg.index)) return false;
    held.push({ peerId: nb.peerId, msg, sizeBytes });
    this.heldBytes += msg.payload.length;
    return true;
  }

  onPiece(nb, msg, sizeBytes, now, replay = false) {
    if (!replay && !this.store.get(msg.seq) && this.holdPiece(nb, msg, sizeBytes)) {
      nb.bytesReceived += sizeBytes;
      return;
    }
    const result = this.store.addPiece(msg.seq, msg.index, msg.count, msg.payload);
    if (!replay) nb.bytesReceived += sizeBytes;
    if (result === PieceResult.MISMATCH) {
      throw new ProtocolError(`piece ${msg.seq}/${msg.index}: count ${msg.count} disagrees`);
    }
    if (result === PieceResult.FORGED) {
      this.drop(nb, `forged piece ${msg.seq}/${msg.index}`, ByeReason.FORGED);
      return;
    }
    if (result !== PieceResult.NEW) {
      this.bytesDuplicate += msg.payload.length;
      return;
    }
    if (nb.isSource) this.bytesFromSource += msg.payload.length;
    else this.bytesFromPeers += msg.payload.length;
    nb.meter.received(sizeBytes, now);
    nb.lastUsefulS = now;
    const a = nb.assignments.get(msg.seq);
    if (a !== undefined) {
      a.lastProgressS = now;
      nb.strikes = 0;
    }
    // Whoever was asked for this piece (normally nb alone) need not send it any more.
    for (const holder of [...this.nbrs.values()]) {
      const held = holder.assignments.get(msg.seq);
      if (held !== undefined && held.pieces !== null) {
        held.pieces.delete(msg.index);
        held.estimateBytes = held.pieces.size * this.config.pieceSizeBytes;
        if (held.pieces.size === 0) this.finishAssignment(holder, msg.seq);
      }
    }
    for (const other of this.nbrs.values()) {
      if (other.serving.length) this.ready.add(other.peerId);
    }
    const chunk = this.store.get(msg.seq);
    if (chunk !== null && chunk.complete) this.onComplete(msg.seq);
  }

  finishAssignment(nb, seq) {
    nb.assignments.delete(seq);
    if (this.assigned.get(seq) === nb.peerId) this.assigned.delete(seq);
    if (nb.assignments.size === 0) nb.meter.idle();
    this.dirty = true;
  }

  onComplete(seq) {
    const chunk = this.store.get(seq);
    if (chunk === null) return;
    this.events.push({ kind: "ChunkComplete", seq, header: chunk.header, data: chunk.data() });
    this.announce(seq, chunk.bits(), null);
    this.dirty = true;
  }

  // ---------------------------------------------------------------- serving

  /** True when item can make no progress now but may later (pieces still coming to us). */
  waiting(item) {
    const chunk = this.store.get(item.seq);
    if (chunk === null || item.headerPending) return false;
    return item.pieces.every((i) => chunk.pieces[i] === null) && !chunk.abandoned;
  }

  serveOne(nb) {
    for (const item of [...nb.serving]) {
      const chunk = this.store.get(item.seq);
      const starved = chunk !== null && item.pieces.every((i) => chunk.pieces[i] === null);
      if (chunk === null || (chunk.abandoned && starved)) {
        nb.serving.splice(nb.serving.indexOf(item), 1);
        this.release(item);
        if (item.pieces.length) {
          const first = item.pieces[0];
          const count = item.pieces[item.pieces.length - 1] - first + 1;
          this.sendControl(
            nb,
            encodeMessage({ type: "absent", seq: item.seq, firstIndex: first, count }),
          );
        }
        continue;
      }
      if (item.headerPending) {
        item.headerPending = false;
        if (item.pieces.length === 0) nb.serving.splice(nb.serving.indexOf(item), 1);
        nb.headersSent.add(item.seq);
        return encodeMessage(chunk.header);
      }
      for (let pos = 0; pos < item.pieces.length; pos++) {
        const index = item.pieces[pos];
        const payload = chunk.pieces[index];
        if (payload !== null) {
          item.pieces.splice(pos, 1);
          if (item.pieces.length === 0) nb.serving.splice(nb.serving.indexOf(item), 1);
          return encodeMessage({
            type: "piece",
            seq: item.seq,
            index,
            count: chunk.pieces.length,
            payload,
          });
        }
      }
    }
    return null;
  }

  /** Give back the source's per-chunk budget for pieces it will not send after all. */
  release(item, dropped = null) {
    if (this.role !== Role.SOURCE || !item.reservedBytes) return;
    const chunk = this.store.get(item.seq);
    if (chunk === null) return;
    const pieces = dropped === null ? item.pieces : dropped;
    let size = 0;
    for (const i of pieces) size += pieceLength(chunk.header, i);
    const back = Math.min(item.reservedBytes, size);
    item.reservedBytes -= back;
    this.sourceReserved.set(item.seq, (this.sourceReserved.get(item.seq) ?? 0) - back);
  }

  // ---------------------------------------------------------------- scheduling

  /** Run after every input: playout, window, scheduling. */
  after(now) {
    this.play(now);
    if (this.dirty && this.role !== Role.SOURCE) {
      this.dirty = false;
      this.schedule(now);
    }
  }

  mediaStartS(seq) {
    const chunk = this.store.get(seq);
    return chunk === null ? null : chunk.header.startUs / 1e6;
  }

  play(now) {
    const pb = this.playback;
    if (pb === null || pb.startSeq === null) return;
    if (!pb.started) {
      const start = this.store.get(pb.startSeq);
      if (start !== null && start.complete) pb.startIfReady(now, true, start.header.startUs / 1e6);
    }
    const due = pb.due(
      now,
      (s) => this.mediaStartS(s),
      (s) => this.store.isComplete(s),
    );
    for (const [seq, ok] of due) {
      const chunk = this.store.get(seq);
      if (ok && chunk !== null) {
        const deadline = pb.deadline(seq, chunk.header.startUs / 1e6, now);
        const lagS = deadline - chunk.header.releaseUs / 1e6;
        pb.lagsS.push(lagS);
        this.events.push({ kind: "ChunkPlayed", seq, lagS, data: chunk.data() });
      } else {
        this.events.push({ kind: "ChunkMissed", seq });
        this.abandon(seq);
      }
      this.dirty = true;
    }
    if (pb.nextSeq !== null) {
      const floor = pb.nextSeq - this.config.keepBehindChunks;
      if (floor > this.store.floorSeq) {
        for (let seq = this.store.floorSeq; seq < Math.min(floor, pb.nextSeq); seq++) {
          this.abandon(seq);
        }
        this.store.evictBelow(floor);
        for (const nb of this.nbrs.values()) nb.forgetBelow(floor);
        for (const seq of [...this.heldPieces.keys()]) if (seq < floor) this.releaseHeld(seq, null);
        for (const seq of [...this.pendingHeaders.keys()]) {
          if (seq < floor) this.pendingHeaders.delete(seq);
        }
      }
    }
  }

  /** Stop fetching seq (played past it); neighbours waiting on its pieces get absent. */
  abandon(seq) {
    const owner = this.assigned.get(seq);
    this.assigned.delete(seq);
    if (owner !== undefined && this.nbrs.has(owner)) {
      const nb = this.nbrs.get(owner);
      if (nb.assignments.delete(seq)) {
        const cancel = { type: "cancel", seq, firstIndex: 0, count: ALL_PIECES };
        this.sendControl(nb, encodeMessage(cancel));
      }
      if (nb.assignments.size === 0) nb.meter.idle();
    }
    const chunk = this.store.get(seq);
    if (chunk !== null && !chunk.complete) {
      chunk.abandoned = true;
      for (const nb of this.nbrs.values()) if (nb.serving.length) this.ready.add(nb.peerId);
    }
  }

  timeOut(nb, seq, now) {
    nb.assignments.delete(seq);
    if (this.assigned.get(seq) === nb.peerId) this.assigned.delete(seq);
    if (nb.assignments.size === 0) nb.meter.idle();
    this.sendControl(nb, encodeMessage({ type: "cancel", seq, firstIndex: 0, count: ALL_PIECES }));
    nb.notFrom.set(seq, now + 2 * this.config.requestTimeoutS);
    nb.strikes += 1;
    if (nb.strikes >= this.config.stallStrikes) {
      this.drop(nb, `stalled: ${nb.strikes} requests timed out`, ByeReason.STALLED);
    }
    this.dirty = true;
  }

  schedule(now) {
    const pb = this.playback;
    this.workPending = false;
    if (pb === null || pb.nextSeq === null || this.newestHeard === null) return;
    const lo = pb.nextSeq;
    const hi = Math.min(this.newestHeard, lo + this.config.fetchAheadChunks);
    const uploaders = [...this.nbrs.values()].filter((nb) => nb.uploads);
    const wants = [];
    for (let seq = lo; seq <= hi; seq++) {
      const chunk = this.store.get(seq);
      if ((chunk !== null && chunk.complete) || this.assigned.has(seq)) continue;
      const holders = [];
      const completeHolders = new Set();
      const sourceHolders = [];
      for (const nb of uploaders) {
        if (!nb.holds(seq) || (nb.notFrom.get(seq) ?? -1) > now) continue;
        if (nb.isSource) sourceHolders.push(nb.peerId);
        else {
          holders.push(nb.peerId);
          if (nb.complete.has(seq)) completeHolders.add(nb.peerId);
        }
      }
      if (holders.length === 0 && sourceHolders.length === 0) continue;
      const estimateBytes =
        chunk === null
          ? this.config.defaultChunkBytes
          : chunk.missing().length * chunk.header.pieceSize;
      const deadlineS = pb.deadline(seq, this.mediaStartS(seq), now);
      wants.push({ seq, deadlineS, holders, completeHolders, sourceHolders, estimateBytes });
    }
    if (wants.length === 0) return;
    const capacity = new Map();
    for (const nb of uploaders) {
      const { pipelineS, minInflightBytes } = this.config;
      capacity.set(nb.peerId, nb.capacityBytes(pipelineS, minInflightBytes));
    }
    const plan = planRequests(wants, capacity, now, this.config.urgentS, this.rng);
    for (const [seq, pid] of plan) this.request(this.nbrs.get(pid), seq, now);
    this.workPending = plan.length < wants.length;
  }

  request(nb, seq, now) {
    const chunk = this.store.get(seq);
    let a;
    if (chunk === null) {
      this.sendControl(
        nb,
        encodeMessage({ type: "request", seq, firstIndex: 0, count: ALL_PIECES, wantHeader: true }),
      );
      a = {
        seq,
        pieces: null,
        requestedS: now,
        lastProgressS: now,
        estimateBytes: this.config.defaultChunkBytes,
      };
    } else {
      const missing = chunk.missing();
      for (const [first, count] of runs(missing)) {
        this.sendControl(
          nb,
          encodeMessage({ type: "request", seq, firstIndex: first, count, wantHeader: false }),
        );
      }
      a = {
        seq,
        pieces: new Set(missing),
        requestedS: now,
        lastProgressS: now,
        estimateBytes: missing.length * chunk.header.pieceSize,
      };
    }
    nb.assignments.set(seq, a);
    nb.meter.busy(now);
    this.assigned.set(seq, nb.peerId);
  }

  // ---------------------------------------------------------------- helpers

  sendControl(nb, data) {
    nb.control.push(data);
    this.ready.add(nb.peerId);
  }

  announce(seq, bits, skip) {
    const have = encodeMessage({ type: "have", seq, pieces: bits });
    for (const nb of this.nbrs.values()) {
      if (nb.peerId !== skip && !nb.complete.has(seq)) this.sendControl(nb, have);
    }
  }

  drop(nb, reason, byeReason) {
    const bye = encodeMessage({ type: "bye", reason: byeReason, text: reason });
    this.forget(nb, reason, bye);
  }

  forget(nb, reason, bye) {
    if (!this.nbrs.has(nb.peerId)) return;
    const kind = reason.split(":")[0].split(" ")[0];
    this.drops[kind] = (this.drops[kind] ?? 0) + 1;
    this.events.push({ kind: "DropNeighbour", peerId: nb.peerId, reason, bye });
    this.removeNeighbour(nb.peerId, this.now);
  }
}

export { Role, seededRandom };
