// SwarmPeer: one peer's sans-I/O swarm state machine, the JavaScript port of
// streamer/swarm/peer.py (the rules: docs/protocol.md, Behaviour). The page's player, signaling and
// WebRTC code drive it; node tests drive it with explicit time. No DOM, no timers, no WebRTC, no
// clock in here: every call takes `now` (seconds; pass Date.now() / 1000 so that lag against the
// source's release time means something).
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
//   core.uploadPeers() -> peerId[]              // links whose requests hold an upload slot now
//   core.nextTimer() -> number | null           // call handleTimer(now) at that time
//   core.handleTimer(now)
//   core.popEvents() -> [{kind, ...}]           // see the event kinds below
//   core.stats() -> {startup_s, continuity, lag_s_p50, lag_s_p95, chunks_played, chunks_late,
//                    chunks_missed, lag_added_s, stall_s, reanchored_s, reanchors, bytes_from_source, bytes_from_peers,
//                    bytes_uploaded, timeouts, ...}
//                                               // (Python's names)
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
import { Neighbour, UplinkMeter } from "./neighbours.js";
import { Playback } from "./playback.js";
import { hasBit, maskOf, mayServe, planPieces, seededRandom } from "./scheduler.js";
import { assignFirstCopies, seedWeights } from "./seeding.js";

/** Tunables, with units in their names: the defaults of streamer/swarm/config.py. */
export const DEFAULT_CONFIG = Object.freeze({
  /** Nominal chunk duration: deadlines of chunks whose header is not known yet extrapolate it. */
  chunkDurationS: 1.0,
  pieceSizeBytes: 8192,
  defaultChunkBytes: 131072,
  targetNeighbours: 8,
  /** Above target: room kept for newcomers who ask us. */
  maxNeighbours: 12,
  wantNeighboursIntervalS: 2.0,
  /** A viewer starts this many chunks behind the newest it hears of, as a safety margin. */
  startBehindChunks: 1,
  /**
   * ...but once a neighbour other than the source holds a chunk whole, it starts this many chunks
   * past the newest such chunk (one that is crossing the swarm now), if it has heard of that one...
   */
  startPastPeersChunks: 1,
  /** ...within this long of the first news (buffer maps first, then haves of fresher chunks). */
  startSettleS: 0.5,
  /**
   * Before playout, once this many chunks after the start chunk are complete and it is not,
   * playout starts at the first of them: the start chunk may be one that only the source still
   * holds, whose copy budget is spent.
   */
  startGiveUpChunks: 2,
  fetchAheadChunks: 8,
  /** A chunk whose playout deadline is closer than this is urgent: fetched first, by anyone. */
  urgentS: 1.5,
  /** Chunks kept after playing them, for neighbours that are behind us. */
  keepBehindChunks: 6,
  /** A seq further than this beyond the newest verified one is a protocol error. */
  maxAheadChunks: 64,
  /**
   * No progress on a request for this long beyond the neighbour's measured response time:
   * cancel what is left and ask someone else.
   */
  requestTimeoutS: 1.5,
  /**
   * Pieces asked of a peer that sent nothing of them for this long beyond its response time
   * (queued behind others' requests there) are asked of another holder with room instead, and
   * cancelled there.
   */
  moveAfterS: 0.2,
  /**
   * ...but only from a holder whose response time is below this: a cancel takes about as long to
   * reach a slower one as the piece takes to come, so a move there mostly fetches it twice.
   */
  moveMaxResponseS: 0.2,
  /** A neighbour's response time until one is measured (a home link's round trip). */
  initialResponseS: 0.25,
  /** Pieces in flight per neighbour = measured throughput x this (in bytes, then pieces). */
  pipelineS: 1.0,
  /** Floor of the in-flight limit (before any throughput is measured). */
  minInflightBytes: 16384,
  /** Requests served at a time, most urgent (lowest seq, then oldest) first. */
  uploadSlots: 2,
  /** After an absent, do not ask that neighbour for that chunk again for this long. */
  busyRetryS: 0.5,
  /** Play each chunk this long after the source released it (when clocks agree). */
  targetLagS: 2.5,
  /**
   * Playout begins at least this long after the start chunk completes, however old it is (a
   * viewer joining a swarm whose chunks take longer than targetLagS to cross it).
   */
  startMarginS: 1.0,
  /**
   * A chunk completing closer than this to its deadline slows playout down (the lag adapts to
   * how long chunks take to cross the swarm; see Playback).
   */
  lagMarginS: 0.7,
  /** At most this much lag added per close call (a player slows down briefly to absorb it). */
  lagStepS: 0.5,
  /** A chunk missing at its deadline stalls playout this long at a time... */
  stallStepS: 0.5,
  /** ...up to this long in all; then it is skipped. */
  maxStallS: 2.0,
  /** Playout is never pushed back further than this beyond where it started. */
  maxLagAddedS: 10.0,
  catchUpMarginS: 1.5,
  catchUpStepS: 0.2,
  /**
   * After catchUpChunks chunks in a row completed catchUpMarginS or more before their deadlines,
   * playout speeds up by catchUpStepS per chunk (never below targetLagS).
   */
  catchUpChunks: 4,
  /** Outstanding requests a neighbour may have on us; more is a protocol error (flooding). */
  maxServeQueue: 64,
  /** Timeouts in a row (on requests it could have served at once) before it is dropped. */
  stallStrikes: 3,
  /**
   * At most one have per chunk per neighbour this often: the pieces verified meanwhile travel
   * together in the next one (the first goes at once).
   */
  haveIntervalS: 0.05,
  /**
   * What one have costs on the uplink: its own packet (IP, UDP, DTLS and SCTP headers, about 80
   * bytes, for a payload of a few): a data channel sends a small message alone.
   */
  haveWireBytes: 100,
  /**
   * Haves slow down (up to maxHaveIntervalS) so that they take at most this share of the
   * uplink as measured (haveIntervalS).
   */
  haveUplinkShare: 0.1,
  maxHaveIntervalS: 0.5,
  /** The uplink counts as measured while a request has waited this long in our upload queue. */
  backlogAgeS: 0.2,
  /**
   * Send a chunk's signed header along with the first have of it to a neighbour that shows no
   * sign of holding it (see SwarmPeer.sendHave).
   */
  pushHeaders: true,
  /** Housekeeping period while there is work pending (retries after capacity frees up). */
  /** Super-seeding: each piece first to one neighbour; the whole chunk to all after this delay. */
  sourceAnnounceDelayS: 0.6,
  /**
   * Super-seeding goes only to neighbours that joined less than this ago or whose haves showed,
   * within this time, pieces the source never sent them (they are fed by peers, so linked into
   * the swarm): a neighbour every peer dropped (a liar) cannot spread a first copy.
   */
  sourceSeedProofS: 2.0,
  /**
   * A first copy counts as spreading once this many neighbours announced that piece without
   * getting it from us; until then, after sourceAnnounceDelayS, it is offered to one more linked
   * uploader (see reseedStuck).
   */
  sourceSpreadHolders: 2,
  /**
   * After the whole-chunk announce, the source looks again every reseed interval, while the
   * chunk is younger than the window, for first copies that still have not spread, and offers
   * each to one more linked uploader (one may leave or be slow too).
   */
  /**
   * First copies go to uploaders in proportion to 1 / how soon they ask for what they are
   * offered (seeding.js), counted as at least this.
   */
  sourceSeedResponseFloorS: 0.05,
  sourceReseedIntervalS: 0.4,
  sourceReseedWindowS: 3.0,
  /** No neighbour gets more than this share of a chunk's copy budget (see sourceAdmit). */
  sourceMaxShare: 0.5,
  /** The source uploads at most this many copies of a chunk, however large the audience. */
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
const byNumber = (a, b) => a - b;

/**
 * nb.forgetBelow(floorSeq), and the header pushes to it below floorSeq too (Python's
 * Neighbour.forget_below evicts headers_sent; neighbours.js does not).
 */
function forgetBelow(nb, floorSeq) {
  nb.forgetBelow(floorSeq);
  for (const s of [...nb.headersSent]) if (s < floorSeq) nb.headersSent.delete(s);
}

/** Lexicographic comparison of two arrays of numbers (Python's tuple order). */
function compareKeys(a, b) {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

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
    /** seq -> Map(piece index -> the neighbour we asked for it): one at a time per piece. */
    this.inflight = new Map();
    /** seq -> the neighbour we asked for its header (we hold no verified header yet). */
    this.headerFrom = new Map();
    /** seq -> when we verified its header: neighbours that announced it before are "earlier". */
    this.headerS = new Map();
    this.serveOrder = 0;
    /** seq -> BigInt mask of the pieces we have uploaded at least once (see serveKey). */
    this.sentOnce = new Map();
    /** Requests from all neighbours, oldest first: the one upload queue. */
    this.uploads = [];
    this.events = [];
    this.ready = new Set();
    this.dirty = true;
    this.now = now;
    this.newestHeard = null;
    /** The newest seq a neighbour other than the source holds whole (the start point). */
    this.newestAtPeer = null;
    /** When we first heard of any chunk (the start point settles for startSettleS). */
    this.firstHeardS = now;
    this.nextWantS = role === Role.SOURCE ? null : now;
    // When the plan may change by the clock alone (a chunk turning urgent, a notFrom period
    // ending): the next replan, unless input triggers one first.
    this.replanAtS = null;
    /**
     * The last plan left wanted pieces unasked: every timer replans (room frees up with inputs
     * that are not all worth a replan of their own).
     */
    this.workPending = false;
    this.playback =
      role === Role.SOURCE
        ? null
        : new Playback({
            chunkDurationS: this.config.chunkDurationS,
            startBehindChunks: this.config.startBehindChunks,
            targetLagS: this.config.targetLagS,
            joinedS: now,
            startMarginS: this.config.startMarginS,
            lagMarginS: this.config.lagMarginS,
            lagStepS: this.config.lagStepS,
            stallStepS: this.config.stallStepS,
            maxStallS: this.config.maxStallS,
            maxLagAddedS: this.config.maxLagAddedS,
            catchUpMarginS: this.config.catchUpMarginS,
            catchUpStepS: this.config.catchUpStepS,
            catchUpChunks: this.config.catchUpChunks,
          });
    // headers being verified: seq -> [{header, senders: Set<peerId>}]
    this.pendingHeaders = new Map();
    // pieces held until their chunk's header is verified: seq -> [{peerId, msg, sizeBytes}]
    this.heldPieces = new Map();
    this.heldBytes = 0;
    // source state
    this.announceLater = new Map(); // seq -> [whenS, peerIds]
    /** seq -> when to look again for first copies that have not spread (see reseedStuck). */
    this.reseedAt = new Map();
    /**
     * seq -> Map(piece index -> Set of neighbours offered it again since its first copy did
     * not spread): their copies are first copies too, outside the budget.
     */
    this.reseeded = new Map();
    /** seq -> bytes of copies beyond the first that are queued or sent (the budget). */
    this.sourceReserved = new Map();
    /** seq -> Map(piece index -> the neighbour we super-seeded it to: its first copy). */
    this.seedTarget = new Map();
    this.seedTurn = 0;
    /** seq -> Map(neighbour -> when we super-seeded it pieces of seq, until it asks for them). */
    this.seedSentS = new Map();
    /** Weighted round robin of first copies over uploaders (see seeding.js). */
    this.seedCredit = new Map();
    /**
     * seq -> Map(piece index -> how many neighbours announced it without getting it from us):
     * at sourceSpreadHolders, its first copy is spreading through the swarm.
     */
    this.sourceSpread = new Map();
    // stats
    this.bytesFromSource = 0;
    this.bytesFromPeers = 0;
    this.bytesUploaded = 0;
    this.uplink = new UplinkMeter();
    this.bytesDuplicate = 0;
    this.timeouts = 0;
    /** Urgent requests taken from a holder too slow to meet the deadline. */
    this.rescues = 0;
    /** Pieces asked of another holder after sitting unsent at the first (moveAfterS). */
    this.moved = 0;
    this.streamBytes = 0;
    this.drops = {};
    /** Peers that sent forged or malformed data: never accepted as neighbours again. */
    this.banned = new Set();
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

  /** A link to peerId is open. False (and nothing changes) when we are full (or it is banned). */
  addNeighbour(peerId, now) {
    if (this.nbrs.has(peerId)) return true;
    if (!this.hasRoom() || this.banned.has(peerId)) return false;
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
    for (const a of nb.assignments.values()) {
      this.releaseAsked(peerId, a.seq, a.pieces, a.headerPending);
    }
    for (const item of nb.serving) this.release(item);
    this.uploads = this.uploads.filter((item) => item.peerId !== peerId);
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
    if (this.settleHeader(pending, ok, now)) this.dirty = true;
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
    this.superSeed(seq, header.pieceHashes.length);
    if (this.nbrs.size) {
      this.announceLater.set(seq, [now + this.config.sourceAnnounceDelayS, [...this.nbrs.keys()]]);
    }
    const floor = seq - this.config.sourceKeepChunks + 1;
    this.store.evictBelow(floor);
    for (const table of [
      this.sourceReserved,
      this.sentOnce,
      this.seedTarget,
      this.reseeded,
      this.sourceSpread,
      this.reseedAt,
      this.seedSentS,
    ]) {
      for (const old of [...table.keys()]) if (old < floor) table.delete(old);
    }
    for (const nb of this.nbrs.values()) forgetBelow(nb, floor);
    this.after(now);
  }

  /**
   * Advertise each piece of a fresh chunk to one uploading neighbour, different pieces to
   * different neighbours, so the first copies land on many peers and their uplinks all start
   * working at once; more of them on neighbours that ask soon for what they are offered (see
   * seeding.js).
   *
   * Relays get no preference by role: a relay may be upload-capped, and a first copy stuck behind a slow
   * uplink delays that piece for everyone. Only neighbours linked into the swarm are seeded (see
   * sourceSeedProofS); if none is, all uploaders are.
   */
  superSeed(seq, pieceCount) {
    const proofS = this.config.sourceSeedProofS;
    const uploaders = [...this.nbrs.values()].filter((nb) => nb.uploads && !nb.isSource);
    const linked = uploaders.filter(
      (nb) =>
        this.now - nb.connectedS < proofS ||
        (nb.fedByPeersS !== null && this.now - nb.fedByPeersS < proofS),
    );
    const order = (linked.length ? linked : uploaders).sort((a, b) =>
      a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0,
    );
    if (order.length === 0) return;
    const weights = seedWeights(
      new Map(order.map((nb) => [nb.peerId, nb.seedResponse.baseS])),
      this.config.sourceSeedResponseFloorS,
      this.config.initialResponseS,
    );
    const bits = new Map();
    let targets = this.seedTarget.get(seq);
    if (targets === undefined) {
      targets = new Map();
      this.seedTarget.set(seq, targets);
    }
    assignFirstCopies(weights, pieceCount, this.seedCredit).forEach((pid, index) => {
      if (!bits.has(pid)) bits.set(pid, new Array(pieceCount).fill(false));
      bits.get(pid)[index] = true;
      targets.set(index, pid);
    });
    this.seedTurn += pieceCount;
    const sent = this.seedSentS.get(seq) ?? new Map();
    this.seedSentS.set(seq, sent);
    for (const [pid, mask] of bits) {
      sent.set(pid, this.now);
      this.sendHave(this.nbrs.get(pid), seq, mask);
    }
  }

  /**
   * Offer pieces whose first copy has not spread yet to one more linked uploader each.
   *
   * A first copy can sit at a neighbour whose uplink is slow or queued; until the whole-chunk
   * announce, nobody else may know it exists, and after it everyone would wait for it to turn
   * urgent. The offer is repeated every sourceReseedIntervalS while the chunk is young, each
   * time to an uploader not offered it yet. Such a copy is served even when fallback requests
   * have spent the budget (see sourceAdmit).
   */
  reseedStuck(seq, pieceCount) {
    const spread = this.sourceSpread.get(seq) ?? new Map();
    const enough = this.config.sourceSpreadHolders;
    const targets = this.seedTarget.get(seq) ?? new Map();
    const stuck = [];
    for (let i = 0; i < pieceCount; i++) {
      if ((spread.get(i) ?? 0) < enough && targets.has(i)) stuck.push(i);
    }
    if (stuck.length === 0) return;
    const proofS = this.config.sourceSeedProofS;
    const order = [...this.nbrs.values()]
      .filter(
        (nb) =>
          nb.uploads &&
          !nb.isSource &&
          nb.fedByPeersS !== null &&
          this.now - nb.fedByPeersS < proofS,
      )
      .sort((a, b) => (a.peerId < b.peerId ? -1 : a.peerId > b.peerId ? 1 : 0));
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
      const pick = choices[(this.seedTurn + n) % choices.length];
      tried.add(pick.peerId);
      if (!bits.has(pick.peerId)) bits.set(pick.peerId, new Array(pieceCount).fill(false));
      bits.get(pick.peerId)[index] = true;
    });
    for (const [pid, maskBits] of bits) this.sendHave(this.nbrs.get(pid), seq, maskBits);
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

  /**
   * Next header or piece for peerId; call it when that link has room to send.
   *
   * Only requests holding one of the few upload slots are served (most urgent first): serving
   * one request at full speed, then the next, spreads a chunk faster than sharing the uplink.
   */
  nextDataMessage(peerId, now) {
    this.now = now;
    for (const item of this.slotItems()) {
      if (item.peerId === peerId) {
        const out = this.serve(item);
        this.bytesUploaded += out.length;
        this.nbrs.get(peerId).bytesSent += out.length;
        return out;
      }
    }
    return null;
  }

  /** Peer ids whose requests hold an upload slot now: pump nextDataMessage for these. */
  uploadPeers() {
    const seen = [];
    for (const item of this.slotItems()) if (!seen.includes(item.peerId)) seen.push(item.peerId);
    return seen;
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
      if (nb.assignments.size === 0) continue;
      const timeoutS = this.timeoutS(nb);
      for (const a of nb.assignments.values()) times.push(a.lastProgressS + timeoutS);
    }
    for (const [when] of this.announceLater.values()) times.push(when);
    for (const when of this.reseedAt.values()) times.push(when);
    for (const nb of this.nbrs.values()) if (nb.haveDue.size) times.push(nb.haveNextS);
    if (this.nextWantS !== null && this.nbrs.size < this.config.targetNeighbours) {
      times.push(this.nextWantS);
    }
    const pb = this.playback;
    if (pb !== null && pb.started && pb.nextSeq !== null && !pb.waitingAtEdge) {
      times.push(pb.deadline(pb.nextSeq, this.mediaStartS(pb.nextSeq), this.now));
    }
    if (this.replanAtS !== null) times.push(this.replanAtS);
    return times.length ? Math.min(...times) : null;
  }

  handleTimer(now) {
    this.now = now;
    for (const nb of this.nbrs.values()) {
      if (nb.haveDue.size && now >= nb.haveNextS) this.flushHaves(nb);
    }
    for (const nb of [...this.nbrs.values()]) {
      const timeoutS = this.timeoutS(nb);
      for (const [seq, a] of [...nb.assignments]) {
        const dueS = a.lastProgressS + timeoutS;
        if (this.nbrs.has(nb.peerId) && now >= dueS) this.timeOut(nb, seq, now);
      }
    }
    for (const [seq, [when, pids]] of [...this.announceLater]) {
      if (when > now) continue;
      this.announceLater.delete(seq);
      const chunk = this.store.get(seq);
      if (chunk === null) continue;
      this.reseedStuck(seq, chunk.pieces.length);
      this.reseedAt.set(seq, now + this.config.sourceReseedIntervalS);
      const bits = allTrue(chunk.pieces.length);
      for (const pid of pids) {
        const target = this.nbrs.get(pid);
        if (target !== undefined && !target.complete.has(seq)) this.sendHave(target, seq, bits);
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
      this.reseedStuck(seq, chunk.pieces.length);
      this.reseedAt.set(seq, now + this.config.sourceReseedIntervalS);
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
    // Timeouts and rescues reschedule by themselves; the clock alone changes the plan at
    // replanAtS. Most timers are have flushes and playout deadlines: nothing to replan, unless
    // work is pending (the last plan left wanted pieces unasked).
    this.rescueSlow(now);
    if (this.workPending || (this.replanAtS !== null && now >= this.replanAtS)) this.dirty = true;
    this.after(now);
  }

  // ---------------------------------------------------------------- stats

  /**
   * Has a request waited in our upload queue for backlogAgeS? (The uplink, not the demand, sets
   * the pace then.)
   */
  uploadBacklogged(now) {
    // The queue keeps arrival order: the first is the oldest.
    const first = this.uploads[0];
    return first !== undefined && now - first.queuedS >= this.config.backlogAgeS;
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
      chunks_late: pb ? pb.late : 0,
      chunks_missed: pb ? pb.missed : 0,
      lag_added_s: pb ? pb.lagAddedS : 0.0,
      stall_s: pb ? pb.stallS : 0.0,
      reanchored_s: pb ? pb.reanchoredS : 0.0,
      reanchors: pb ? pb.reanchors : 0,
      paused_s: pb ? pb.pausedS : 0.0,
      longest_pause_s: pb ? pb.longestPauseS : 0.0,
      bytes_from_source: this.bytesFromSource,
      bytes_from_peers: this.bytesFromPeers,
      bytes_uploaded: this.bytesUploaded,
      bytes_duplicate: this.bytesDuplicate,
      timeouts: this.timeouts,
      rescues: this.rescues,
      moved: this.moved,
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
        if (!nb.announcedS.has(msg.seq)) nb.announcedS.set(msg.seq, now);
        const before = nb.knownMask(msg.seq);
        const whole = msg.pieces.every(Boolean);
        if (whole) {
          nb.complete.add(msg.seq);
          nb.partial.delete(msg.seq);
        } else if (!nb.complete.has(msg.seq)) {
          nb.partial.set(msg.seq, before | maskOf(msg.pieces));
        }
        this.heard(msg.seq, whole && !nb.isSource);
        if (this.role === Role.SOURCE) {
          const fed = maskOf(msg.pieces) & ~(nb.sentMask.get(msg.seq) ?? 0n);
          if (fed !== 0n) {
            nb.fedByPeersS = now; // it holds pieces we never sent it: peers feed it
            const news = fed & ~before; // (each neighbour counts once per piece)
            if (news !== 0n) {
              if (!this.sourceSpread.has(msg.seq)) this.sourceSpread.set(msg.seq, new Map());
              const counts = this.sourceSpread.get(msg.seq);
              for (let i = 0; i < msg.pieces.length; i++) {
                if (hasBit(news, i)) counts.set(i, (counts.get(i) ?? 0) + 1);
              }
            }
          }
          return;
        }
        if (!this.wantsNews(msg.seq, before, nb.knownMask(msg.seq))) {
          return; // nothing new for us: no need to reschedule (most haves)
        }
        if (!nb.isSource && this.room(nb) <= 0) {
          // Only nb holds anything new, and it has no room for more requests: the plan cannot
          // change until it has (a piece from it reschedules).
          return;
        }
        break;
      }
      case "request":
        this.onRequest(nb, msg);
        return; // serving changes nothing we want: no rescheduling
      case "chunk_header":
        if (!this.onHeader(nb, msg, now)) return;
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
          this.heard(newest, !nb.isSource);
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
        nb.uploads = (msg.capabilities & Capability.UPLOAD) !== 0;
        break;
      case "cancel":
        this.onCancel(nb, msg);
        return;
      case "absent":
        this.onAbsent(nb, msg, now);
        break;
      case "bye":
        this.forget(nb, `bye: ${msg.reason} ${msg.text}`.trim(), null);
        return;
      default:
        return; // unknown type: ignored, as the spec says
    }
    this.dirty = true;
  }

  /**
   * Did a have (known mask before -> after) offer something we need and nobody is fetching for
   * us yet (a header, or a missing piece)? Only then is it worth rescheduling.
   */
  wantsNews(seq, before, after) {
    if (after === before && before !== 0n) return false;
    const chunk = this.store.get(seq);
    if (chunk === null) return !this.headerFrom.has(seq) && !this.pendingHeaders.has(seq);
    if (chunk.complete || chunk.abandoned) return false;
    const asked = this.inflight.get(seq);
    const fresh = before !== -1n ? after & ~before : 0n;
    return chunk
      .missing()
      .some((i) => (after === -1n || hasBit(fresh, i)) && !(asked?.has(i) ?? false));
  }

  /** A seq far beyond anything the source has signed is a lie or garbage. */
  checkSeq(seq, what) {
    const anchor = this.store.newestSeq;
    if (anchor !== null && seq > anchor + this.config.maxAheadChunks) {
      throw new ProtocolError(`${what}: seq ${seq} is far ahead of the stream (${anchor})`);
    }
  }

  /** seq exists (atPeer: a neighbour other than the source holds all of it). */
  heard(seq, atPeer = false) {
    if (this.newestHeard === null || seq > this.newestHeard) {
      if (this.newestHeard === null) this.firstHeardS = this.now;
      this.newestHeard = seq;
    }
    if (atPeer && (this.newestAtPeer === null || seq > this.newestAtPeer)) {
      this.newestAtPeer = seq;
    }
    const pb = this.playback;
    if (pb === null) return;
    pb.hearOf(seq);
    if (pb.started || pb.startSeq === null) return;
    const frontier = this.newestAtPeer;
    if (frontier !== null) {
      // Start where the peers are, one chunk past the newest a peer holds whole. That one has
      // crossed the swarm already (its age is the swarm's spread time), and fetching it would
      // add our fetch to that age; the next one is crossing now and completes for us about when
      // it does for the others.
      const past = this.config.startPastPeersChunks;
      const start = Math.max(0, Math.min(frontier + past, this.newestHeard));
      const settling = this.now - this.firstHeardS < this.config.startSettleS;
      // A start chunk we hold pieces of is kept: on a slow link, chasing the frontier threw away
      // every start chunk half fetched, and playout never began.
      const chunk = this.store.get(pb.startSeq);
      const fetching = chunk !== null && chunk.haveCount > 0;
      if (
        pb.startFromPeers === null ||
        start < pb.startSeq ||
        (start - pb.startSeq > 2 && !fetching) ||
        (settling && start > pb.startSeq)
      ) {
        pb.startFromPeers = start;
        pb.startSeq = pb.nextSeq = start;
      }
    } else if (seq - pb.startSeq > pb.startBehindChunks + 2) {
      // Never chase a start point that fell far behind before we could fetch it.
      pb.startSeq = pb.nextSeq = seq - pb.startBehindChunks;
    }
  }

  /**
   * Queue the request; absent only for what we cannot serve (no chunk, gone, budget).
   *
   * There is no "busy" answer: requesters limit what they keep in flight with us, and the queue
   * is served most urgent first, so a request waits its turn instead of bouncing.
   */
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
      const sentS = this.seedSentS.get(msg.seq)?.get(nb.peerId);
      if (sentS !== undefined) {
        this.seedSentS.get(msg.seq).delete(nb.peerId);
        nb.seedResponse.sample(this.now - sentS);
      }
      const admitted = this.sourceAdmit(nb, chunk, indices);
      indices = admitted.served;
      reserved = admitted.reserved;
      for (const [first, count] of runs(admitted.refused)) {
        this.sendControl(
          nb,
          encodeMessage({ type: "absent", seq: msg.seq, firstIndex: first, count }),
        );
      }
      if (indices.length === 0 && !msg.wantHeader) return;
    }
    this.serveOrder += 1;
    const item = {
      peerId: nb.peerId,
      seq: msg.seq,
      pieces: indices,
      headerPending: msg.wantHeader,
      order: this.serveOrder,
      reservedBytes: reserved,
      queuedS: this.now,
    };
    nb.serving.push(item);
    this.uploads.push(item);
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
      // A header still owed is dropped too: the requester gave up on these pieces.
      if (keep.length === 0) this.unqueue(item);
    }
  }

  /** "Not from me": forget what we asked it for in that range, ask others for a while. */
  onAbsent(nb, msg, now) {
    nb.notFrom.set(msg.seq, now + this.config.busyRetryS);
    const a = nb.assignments.get(msg.seq);
    if (a === undefined) return;
    const end = msg.firstIndex + msg.count;
    const gone = new Set([...a.pieces].filter((i) => msg.firstIndex <= i && i < end));
    for (const i of gone) a.pieces.delete(i);
    const header = a.headerPending;
    a.headerPending = false;
    this.releaseAsked(nb.peerId, msg.seq, gone, header);
    if (a.pieces.size === 0) this.finishAssignment(nb, msg.seq);
  }

  /**
   * A header arrived: known bytes are accepted at once, new bytes wait for their check (or are
   * checked at once with verifyHeaderSync). True if that may change what we ask of whom.
   */
  onHeader(nb, header, now) {
    this.checkSeq(header.seq, "chunk header");
    const existing = this.store.get(header.seq);
    if (existing !== null && sameBytes(existing.header.raw ?? new Uint8Array(0), header.raw)) {
      nb.lastDataS = now;
      return this.headerAccepted(nb, header, false, now);
    }
    if (existing === null && header.seq < this.store.floorSeq) {
      // Too old to store; a forgery is still a forgery (checked when we can do it at once).
      if (this.verifyHeaderSync === null) return false;
      if (!this.checkSync(header)) {
        this.drop(nb, `forged chunk header for seq ${header.seq}`, ByeReason.FORGED);
        return true;
      }
      nb.lastDataS = now;
      return this.headerAccepted(nb, header, false, now);
    }
    let list = this.pendingHeaders.get(header.seq);
    const same = list?.find((p) => sameBytes(p.header.raw, header.raw));
    if (same) {
      nb.lastDataS = now;
      same.senders.add(nb.peerId);
      return false;
    }
    if (list === undefined) {
      list = [];
      this.pendingHeaders.set(header.seq, list);
    }
    if (list.length >= 4) {
      // several different headers for one seq at once: all but the genuine one are forged, and
      // there is no need to hold more than a few; this sender's copy waits for the next request.
      nb.lastDataS = now;
      return false;
    }
    const pending = { header, senders: new Set([nb.peerId]) };
    if (this.verifyHeaderSync !== null) {
      if (list.length === 0) this.pendingHeaders.delete(header.seq);
      return this.settleHeader(pending, this.checkSync(header), now);
    }
    nb.lastDataS = now;
    list.push(pending);
    this.events.push({ kind: "VerifyHeader", seq: header.seq, header });
    return false;
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
  settleHeader(pending, ok, now) {
    const seq = pending.header.seq;
    if (!ok) {
      for (const pid of pending.senders) {
        const nb = this.nbrs.get(pid);
        if (nb !== undefined) this.drop(nb, `forged chunk header for seq ${seq}`, ByeReason.FORGED);
      }
      if (!this.pendingHeaders.has(seq)) this.releaseHeld(seq, null);
      return true;
    }
    let replan = false;
    if (this.store.get(seq) !== null) {
      // A second valid header for one seq (the source re-signed): keep the first, as Python does.
      for (const pid of pending.senders) {
        const nb = this.nbrs.get(pid);
        if (nb === undefined) continue;
        nb.lastDataS = now;
        replan = this.headerAccepted(nb, pending.header, false, now) || replan;
      }
      return replan;
    }
    const isNew = this.store.addVerifiedHeader(pending.header) === true;
    let first = true;
    for (const pid of pending.senders) {
      const nb = this.nbrs.get(pid);
      if (nb !== undefined) {
        nb.lastDataS = now;
        replan = this.headerAccepted(nb, pending.header, isNew && first, now) || replan;
        first = false;
      }
    }
    if (isNew && first) {
      // every sender left meanwhile: still announce what we now hold
      this.headerS.set(seq, now);
      this.heard(seq);
      this.announce(seq, null);
      replan = true;
    }
    this.releaseHeld(seq, isNew ? this.store.get(seq) : null);
    return replan;
  }

  /**
   * Python's _on_header after a successful add (isNew) or for an already-known header: true if
   * that may change the plan (a header we asked for, or a chunk others with room offer).
   */
  headerAccepted(nb, header, isNew, now) {
    const seq = header.seq;
    if (!nb.announcedS.has(seq)) nb.announcedS.set(seq, now);
    if (this.headerFrom.get(seq) === nb.peerId) this.headerFrom.delete(seq);
    const a = nb.assignments.get(seq);
    const requested = a !== undefined && a.headerPending;
    if (requested) {
      a.headerPending = false;
      nb.progress(a, a.requestedS, now);
      const count = header.pieceHashes.length;
      const beyond = new Set([...a.pieces].filter((i) => i >= count));
      for (const i of beyond) a.pieces.delete(i);
      this.releaseAsked(nb.peerId, seq, beyond, false);
      if (a.pieces.size === 0) this.finishAssignment(nb, seq);
    }
    const chunk = this.store.get(seq);
    if (isNew && chunk !== null) {
      this.headerS.set(seq, now);
      nb.lastUsefulS = now;
      this.heard(seq);
      this.announce(seq, nb.peerId);
    }
    // A header pushed ahead of its sender's first have: that have, right behind it, tells what
    // to ask for. Only a header we asked for, or of a chunk others with room offer, changes the
    // plan now.
    if (!isNew) return requested;
    if (requested) return true;
    for (const o of this.nbrs.values()) {
      if (o !== nb && o.holds(seq) && (o.isSource || this.room(o) > 0)) return true;
    }
    return false;
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
    const { seq, index } = msg;
    if (!replay) nb.lastDataS = now;
    if (!replay && this.store.get(seq) === null && this.holdPiece(nb, msg, sizeBytes)) {
      nb.bytesReceived += sizeBytes;
      const a = nb.assignments.get(seq);
      if (a !== undefined && a.pieces.has(index)) {
        nb.progress(a, a.askedS.get(index) ?? a.requestedS, now); // progress, unchecked
      }
      return;
    }
    const result = this.store.addPiece(seq, index, msg.count, msg.payload);
    if (!replay) nb.bytesReceived += sizeBytes;
    if (result === PieceResult.MISMATCH) {
      throw new ProtocolError(`piece ${seq}/${index}: count ${msg.count} disagrees`);
    }
    if (result === PieceResult.FORGED) {
      this.drop(nb, `forged piece ${seq}/${index}`, ByeReason.FORGED);
      return;
    }
    const a = nb.assignments.get(seq);
    if (a !== undefined && a.pieces.has(index)) {
      a.pieces.delete(index);
      nb.progress(a, a.askedS.get(index) ?? a.requestedS, now);
      nb.strikes = 0;
      if (a.pieces.size === 0 && !a.headerPending) this.finishAssignment(nb, seq);
    }
    if (result !== PieceResult.NEW) {
      this.bytesDuplicate += msg.payload.length;
      return;
    }
    if (nb.isSource) this.bytesFromSource += msg.payload.length;
    else this.bytesFromPeers += msg.payload.length;
    nb.meter.received(sizeBytes, now);
    nb.lastUsefulS = now;
    const asked = this.inflight.get(seq);
    const owner = asked?.get(index);
    if (owner !== undefined) {
      asked.delete(index);
      if (owner !== nb.peerId) this.cancelPiece(owner, seq, index);
    }
    for (const item of this.uploads) if (item.seq === seq) this.ready.add(item.peerId);
    const chunk = this.store.get(seq);
    if (chunk === null) return;
    if (chunk.complete) this.onComplete(seq);
    // Piece-level knowledge: neighbours ask us for exactly the pieces we hold.
    else this.announce(seq, null);
    this.dirty = true;
  }

  /** We got piece index elsewhere: owner need not send it any more. */
  cancelPiece(owner, seq, index) {
    const other = this.nbrs.get(owner);
    if (other === undefined) return;
    const a = other.assignments.get(seq);
    if (a === undefined || !a.pieces.has(index)) return;
    a.pieces.delete(index);
    this.sendControl(other, encodeMessage({ type: "cancel", seq, firstIndex: index, count: 1 }));
    if (a.pieces.size === 0 && !a.headerPending) this.finishAssignment(other, seq);
  }

  finishAssignment(nb, seq) {
    const a = nb.assignments.get(seq);
    if (a !== undefined) {
      nb.assignments.delete(seq);
      this.releaseAsked(nb.peerId, seq, a.pieces, a.headerPending);
    }
    if (nb.assignments.size === 0) nb.meter.idle();
    this.dirty = true;
  }

  /** Forget that peerId was asked for these pieces (and header) of seq. */
  releaseAsked(peerId, seq, pieces, header) {
    const asked = this.inflight.get(seq);
    if (asked !== undefined) {
      for (const i of pieces) if (asked.get(i) === peerId) asked.delete(i);
    }
    if (header && this.headerFrom.get(seq) === peerId) this.headerFrom.delete(seq);
  }

  onComplete(seq) {
    const chunk = this.store.get(seq);
    if (chunk === null) return;
    this.inflight.delete(seq);
    this.headerFrom.delete(seq);
    this.events.push({ kind: "ChunkComplete", seq, header: chunk.header, data: chunk.data() });
    const pb = this.playback;
    if (pb !== null && pb.started && pb.nextSeq !== null && seq >= pb.nextSeq) {
      pb.completed(pb.deadline(seq, chunk.header.startUs / 1e6, this.now), this.now);
    }
    this.announce(seq, null);
    this.dirty = true;
  }

  // ---------------------------------------------------------------- serving

  /**
   * The requests we serve now: the most urgent ones (lowest seq, then oldest) that have a piece
   * (or the header) ready, at most uploadSlots of them.
   *
   * Requests waiting for pieces we are still receiving keep their place without holding a slot;
   * requests we can never complete (chunk gone or abandoned) get an absent.
   */
  slotItems() {
    let ready = [];
    for (const item of [...this.uploads]) {
      const chunk = this.store.get(item.seq);
      if (
        chunk === null ||
        (chunk.abandoned && item.pieces.every((i) => chunk.pieces[i] === null))
      ) {
        this.unqueue(item);
        this.release(item);
        const nb = this.nbrs.get(item.peerId);
        if (nb !== undefined && (item.pieces.length || item.headerPending)) {
          const first = item.pieces.length ? item.pieces[0] : 0;
          const count = item.pieces.length
            ? item.pieces[item.pieces.length - 1] - first + 1
            : ALL_PIECES;
          this.sendControl(
            nb,
            encodeMessage({ type: "absent", seq: item.seq, firstIndex: first, count }),
          );
        }
        continue;
      }
      if (item.headerPending || item.pieces.some((i) => chunk.pieces[i] !== null)) {
        ready.push(item);
      }
    }
    if (ready.length > this.config.uploadSlots) {
      ready.sort((a, b) => compareKeys(this.serveKey(a), this.serveKey(b)));
      ready = ready.slice(0, this.config.uploadSlots);
    }
    return ready;
  }

  /**
   * Serving priority: a piece we hold and never uploaded first (its first forward from here
   * doubles its holders: how fast a chunk crosses the swarm), then lowest seq (nearest its
   * deadline), then the oldest request. Without the first rule every hop waits behind the queue
   * of repairs, and a chunk takes about as long to spread as the lag allows.
   */
  serveKey(item) {
    const sent = this.sentOnce.get(item.seq) ?? 0n;
    const chunk = this.store.get(item.seq);
    const fresh =
      chunk !== null && item.pieces.some((i) => !hasBit(sent, i) && chunk.pieces[i] !== null);
    return [fresh ? 0 : 1, item.seq, item.order];
  }

  /** The next message of a slot item (the header first when it was asked for). */
  serve(item) {
    const chunk = this.store.get(item.seq);
    if (item.headerPending) {
      item.headerPending = false;
      if (item.pieces.length === 0) this.unqueue(item);
      return encodeMessage(chunk.header);
    }
    for (let pos = 0; pos < item.pieces.length; pos++) {
      const index = item.pieces[pos];
      const payload = chunk.pieces[index];
      if (payload !== null) {
        item.pieces.splice(pos, 1);
        if (item.pieces.length === 0) this.unqueue(item);
        const bit = 1n << BigInt(index);
        this.sentOnce.set(item.seq, (this.sentOnce.get(item.seq) ?? 0n) | bit);
        if (this.role === Role.SOURCE) {
          const nb = this.nbrs.get(item.peerId);
          if (nb !== undefined) nb.sentMask.set(item.seq, (nb.sentMask.get(item.seq) ?? 0n) | bit);
        }
        return encodeMessage({
          type: "piece",
          seq: item.seq,
          index,
          count: chunk.pieces.length,
          payload,
        });
      }
    }
    throw new Error("a slot item always has a servable piece");
  }

  unqueue(item) {
    const nb = this.nbrs.get(item.peerId);
    if (nb !== undefined) {
      const at = nb.serving.indexOf(item);
      if (at >= 0) nb.serving.splice(at, 1);
    }
    const at = this.uploads.indexOf(item);
    if (at >= 0) {
      this.uploads.splice(at, 1);
      // Another request may take the freed slot: its link has something to send now.
      for (const other of this.uploads) this.ready.add(other.peerId);
    }
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
  sourceAdmit(nb, chunk, indices) {
    const seq = chunk.header.seq;
    let seeded = this.seedTarget.get(seq);
    if (seeded === undefined) {
      seeded = new Map();
      this.seedTarget.set(seq, seeded);
    }
    const reseeded = this.reseeded.get(seq) ?? new Map();
    const budget = (this.config.sourceMaxCopies - 1) * chunk.header.totalSize;
    const share = this.config.sourceMaxShare * budget;
    let total = this.sourceReserved.get(seq) ?? 0;
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
    this.sourceReserved.set(seq, total);
    nb.extraBytes.set(seq, mine);
    return { served, refused, reserved: mine - before };
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
    const nb = this.nbrs.get(item.peerId);
    if (nb !== undefined && nb.extraBytes.has(item.seq)) {
      nb.extraBytes.set(item.seq, nb.extraBytes.get(item.seq) - back);
    }
  }

  // ---------------------------------------------------------------- scheduling

  /** Run after every input: playout, window, scheduling. */
  after(now) {
    this.uplink.sample(this.bytesUploaded, this.uploadBacklogged(now), now);
    this.play(now);
    if (this.dirty && this.role !== Role.SOURCE) {
      this.dirty = false;
      this.schedule(now);
    }
  }

  mediaStartS(seq) {
    return this.store.mediaStartS(seq, this.config.chunkDurationS);
  }

  releaseS(seq) {
    const chunk = this.store.get(seq);
    return chunk === null ? null : Number(chunk.header.releaseUs) / 1e6;
  }

  /** Past the live edge: no header of seq or of any later chunk has arrived (or is pending). */
  atEdge(seq) {
    const newest = this.store.newestSeq;
    if (this.store.get(seq) !== null) return false;
    for (const pending of this.pendingHeaders.keys()) if (pending >= seq) return false;
    return newest === null || seq > newest;
  }

  play(now) {
    const pb = this.playback;
    if (pb === null || pb.startSeq === null) return;
    if (!pb.started) {
      let start = this.store.get(pb.startSeq);
      if (start === null || !start.complete) {
        const later = this.store.completeSeqs().filter((s) => s > pb.startSeq);
        if (later.length >= this.config.startGiveUpChunks) {
          this.abandon(pb.startSeq);
          pb.startSeq = pb.nextSeq = pb.startFromPeers = later[0];
          start = this.store.get(later[0]);
        }
      }
      if (start !== null && start.complete) {
        pb.startIfReady(now, true, start.header.startUs / 1e6, start.header.releaseUs / 1e6);
      }
    }
    const due = pb.due(
      now,
      (s) => this.mediaStartS(s),
      (s) => this.store.isComplete(s),
      (s) => this.mayCome(s),
      (s) => this.releaseS(s),
      (s) => this.atEdge(s),
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
        // Only seqs we know of: a fresh core's floor (0) may be far below wall-clock seqs.
        const known = new Set(this.inflight.keys());
        for (const chunk of this.store) known.add(chunk.header.seq);
        for (const seq of this.headerFrom.keys()) known.add(seq);
        for (const seq of [...known].filter((s) => s < floor).sort(byNumber)) this.abandon(seq);
        this.store.evictBelow(floor);
        for (const table of [this.headerS, this.sentOnce]) {
          for (const seq of [...table.keys()]) if (seq < floor) table.delete(seq);
        }
        for (const nb of this.nbrs.values()) forgetBelow(nb, floor);
        for (const seq of [...this.heldPieces.keys()]) if (seq < floor) this.releaseHeld(seq, null);
        for (const seq of [...this.pendingHeaders.keys()]) {
          if (seq < floor) this.pendingHeaders.delete(seq);
        }
      }
    }
  }

  /** Stop fetching seq (played past it); neighbours waiting on its pieces get absent. */
  /** Worth stalling for: we hold its header or a neighbour announced some of it. */
  mayCome(seq) {
    if (this.store.get(seq) !== null || this.pendingHeaders.has(seq)) return true;
    for (const nb of this.nbrs.values()) if (nb.holds(seq)) return true;
    return false;
  }

  abandon(seq) {
    const owners = new Set(this.inflight.get(seq)?.values() ?? []);
    this.inflight.delete(seq);
    const headerOwner = this.headerFrom.get(seq);
    this.headerFrom.delete(seq);
    if (headerOwner !== undefined) owners.add(headerOwner);
    for (const owner of owners) {
      const nb = this.nbrs.get(owner);
      if (nb !== undefined && nb.assignments.delete(seq)) {
        const cancel = { type: "cancel", seq, firstIndex: 0, count: ALL_PIECES };
        this.sendControl(nb, encodeMessage(cancel));
        if (nb.assignments.size === 0) nb.meter.idle();
      }
    }
    const chunk = this.store.get(seq);
    if (chunk !== null && !chunk.complete) {
      chunk.abandoned = true;
      for (const item of this.uploads) this.ready.add(item.peerId);
    }
  }

  /**
   * No progress on what we asked nb for seq: cancel it, ask others. A strike only when nb held
   * what we asked for and sent us nothing at all meanwhile (silent, not merely busy serving a
   * queue: with tight upload, queue waits exceed the timeout).
   */
  timeOut(nb, seq, now) {
    const a = nb.assignments.get(seq);
    if (a === undefined) return;
    this.giveUp(nb, seq, now);
    this.timeouts += 1;
    if (a.strikeOnTimeout && nb.lastDataS <= a.lastProgressS) {
      // Silent towards us the whole time (no data for any chunk): a stall, not a queue.
      nb.strikes += 1;
      if (nb.strikes >= this.config.stallStrikes) {
        this.drop(nb, `stalled: ${nb.strikes} requests timed out`, ByeReason.STALLED);
      }
    }
  }

  /**
   * Take urgent pieces away from a holder too slow to deliver them in time.
   *
   * A slow trickle is progress, so the timeout never fires; but if what is left of an
   * assignment, at the holder's measured rate, would land after the chunk's deadline, it is
   * cancelled there (no strike: the holder is serving, only slowly) and asked elsewhere - another
   * holder, or the source, which serves urgent chunks.
   */
  rescueSlow(now) {
    const pb = this.playback;
    if (pb === null || pb.startSeq === null) return;
    const pieceBytes = this.config.pieceSizeBytes;
    for (const nb of [...this.nbrs.values()]) {
      const rate = nb.meter.rateBytesPerS;
      if (!rate) continue;
      for (const [seq, a] of [...nb.assignments]) {
        if (a.pieces.size === 0) continue;
        const deadline = pb.started
          ? pb.deadline(seq, this.mediaStartS(seq), now)
          : now + this.config.targetLagS;
        if (deadline - now > this.config.urgentS) continue;
        if (now + (a.pieces.size * pieceBytes) / rate > deadline) {
          this.giveUp(nb, seq, now);
          this.rescues += 1;
        }
      }
    }
  }

  /** Cancel what is left of our request for seq at nb; do not ask it for seq for a while. */
  giveUp(nb, seq, now) {
    const a = nb.assignments.get(seq);
    if (a === undefined) return;
    nb.assignments.delete(seq);
    this.releaseAsked(nb.peerId, seq, a.pieces, a.headerPending);
    if (nb.assignments.size === 0) nb.meter.idle();
    const pieceRuns = runs([...a.pieces].sort(byNumber));
    for (const [first, count] of pieceRuns.length ? pieceRuns : [[0, ALL_PIECES]]) {
      this.sendControl(nb, encodeMessage({ type: "cancel", seq, firstIndex: first, count }));
    }
    nb.notFrom.set(seq, now + 2 * this.config.requestTimeoutS);
    this.dirty = true;
  }

  schedule(now) {
    const pb = this.playback;
    this.replanAtS = null;
    this.workPending = false;
    if (pb === null || pb.nextSeq === null || this.newestHeard === null) return;
    this.rescueSlow(now);
    const lo = pb.nextSeq;
    // A lag grown beyond the window would leave the freshest chunks unfetched.
    const ahead =
      this.config.fetchAheadChunks +
      Math.ceil(Math.max(0, pb.lagAddedS) / this.config.chunkDurationS);
    const hi = Math.min(this.newestHeard, lo + ahead);
    // Neighbours without room still count for rarity, but cannot be asked: they get no Holder.
    const room = new Map();
    const uploaders = [];
    for (const nb of this.nbrs.values()) {
      if (!nb.uploads) continue;
      room.set(nb.peerId, this.room(nb));
      uploaders.push({ nb, askable: nb.isSource || room.get(nb.peerId) > 0 });
    }
    const peersLinked = uploaders.some(({ nb }) => !nb.isSource);
    const wants = [];
    // The clock alone changes the plan when a chunk turns urgent (the source and earlier
    // holders become askable) or a notFrom period ends: replanAtS.
    const changesS = [];
    let unplannable = 0;
    for (let seq = lo; seq <= hi; seq++) {
      const chunk = this.store.get(seq);
      const missing = [];
      let missingMask = 0n;
      let stuck = [];
      if (chunk !== null) {
        if (chunk.complete) continue;
        const asked = this.inflight.get(seq);
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
      } else if (this.headerFrom.has(seq) || this.pendingHeaders.has(seq)) {
        continue; // someone is sending us its header (or we are checking one)
      }
      const mineS = this.headerS.get(seq);
      const deadlineS = pb.deadline(seq, this.mediaStartS(seq), now);
      const urgent = deadlineS - now <= this.config.urgentS;
      const holders = [];
      let count = 0;
      for (const { nb, askable } of uploaders) {
        const notFromS = nb.notFrom.get(seq);
        if (notFromS !== undefined && notFromS > now) {
          changesS.push(notFromS);
          continue;
        }
        const knownMask = nb.knownMask(seq);
        const announced = nb.isSource ? undefined : nb.announcedS.get(seq);
        const earlier = announced !== undefined && (mineS === undefined || announced <= mineS);
        if (knownMask !== 0n || earlier) {
          count += 1;
          if (askable) {
            const holder = { peerId: nb.peerId, knownMask, earlier, source: nb.isSource };
            if (mayServe(holder, missingMask, urgent, peersLinked)) holders.push(holder);
          }
        }
      }
      if (count && !urgent) {
        // (a hair past the crossing, so that float rounding cannot make it not urgent)
        changesS.push(deadlineS - this.config.urgentS + 1e-6);
      }
      if (holders.length) {
        wants.push({
          seq,
          deadlineS,
          missing,
          needHeader: chunk === null,
          holders,
          holderCount: count,
          stuck,
        });
      } else if (count) {
        unplannable += missing.length || 1;
      }
    }
    if (changesS.length) this.replanAtS = Math.min(...changesS);
    if (wants.length === 0) {
      this.workPending = unplannable > 0;
      return;
    }
    const asks = planPieces(wants, room, now, this.config.urgentS, this.rng, peersLinked);
    let moved = 0;
    let asked = 0;
    for (const ask of asks) {
      moved += this.request(ask, now);
      asked += ask.pieces.length;
    }
    this.moved += moved;
    let wanted = unplannable;
    for (const w of wants) wanted += w.missing.length - w.stuck.length || 1;
    this.workPending = asked - moved < wanted;
  }

  /** How many more pieces we may ask of nb now. */
  room(nb) {
    const { pipelineS, minInflightBytes, pieceSizeBytes } = this.config;
    return nb.roomPieces(pipelineS, minInflightBytes, pieceSizeBytes);
  }

  expectedWaitS(nb) {
    return nb.expectedWaitS(this.config.initialResponseS);
  }

  /** No progress on a request to nb for this long times it out. */
  timeoutS(nb) {
    return this.config.requestTimeoutS + this.expectedWaitS(nb);
  }

  /**
   * {stuck: [[piece, peerId]...], nextS}: pieces of seq asked of a peer that has sent nothing of
   * them for moveAfterS (they wait in its upload queue behind other requesters' pieces), and
   * when the next of the others will be stuck (null: never, as things stand).
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
      const waitS = this.expectedWaitS(nb);
      if (waitS >= this.config.moveMaxResponseS) continue;
      const moveS = this.config.moveAfterS + waitS;
      for (const i of [...a.pieces].sort(byNumber)) {
        if (asked.get(i) !== owner) continue;
        const stuckS = Math.max(a.lastProgressS, a.askedS.get(i) ?? now) + moveS;
        if (stuckS <= now) stuck.push([i, owner]);
        else if (nextS === null || stuckS < nextS) nextS = stuckS;
      }
    }
    return { stuck, nextS };
  }

  /** Send ask; returns how many of its pieces moved here from another neighbour. */
  request(ask, now) {
    const nb = this.nbrs.get(ask.peerId);
    const seq = ask.seq;
    let moved = 0;
    const askedBefore = this.inflight.get(seq);
    for (const i of ask.pieces) {
      const owner = askedBefore?.get(i);
      if (owner !== undefined && owner !== nb.peerId) {
        this.cancelPiece(owner, seq, i);
        moved += 1;
      }
    }
    let wantHeader = ask.wantHeader;
    for (const [first, count] of runs(ask.pieces)) {
      this.sendControl(
        nb,
        encodeMessage({ type: "request", seq, firstIndex: first, count, wantHeader }),
      );
      wantHeader = false;
    }
    const mask = nb.knownMask(seq);
    const holdsAll = ask.pieces.every((i) => hasBit(mask, i));
    let a = nb.assignments.get(seq);
    if (a === undefined) {
      a = {
        seq,
        pieces: new Set(),
        headerPending: false,
        requestedS: now,
        lastProgressS: now,
        strikeOnTimeout: holdsAll,
        askedS: new Map(),
      };
      nb.assignments.set(seq, a);
    } else {
      a.strikeOnTimeout = a.strikeOnTimeout && holdsAll;
    }
    for (const i of ask.pieces) a.pieces.add(i);
    let asked = this.inflight.get(seq);
    if (asked === undefined) {
      asked = new Map();
      this.inflight.set(seq, asked);
    }
    for (const i of ask.pieces) {
      asked.set(i, nb.peerId);
      a.askedS.set(i, now);
    }
    if (ask.wantHeader) {
      a.headerPending = true;
      this.headerFrom.set(seq, nb.peerId);
    }
    nb.meter.busy(now);
    return moved;
  }

  // ---------------------------------------------------------------- helpers

  sendControl(nb, data) {
    nb.control.push(data);
    this.ready.add(nb.peerId);
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
      this.sendControl(nb, encodeMessage(chunk.header));
    }
    this.sendControl(nb, encodeMessage({ type: "have", seq, pieces: bits }));
  }

  /** Owe every neighbour (but skip) a have of seq; see flushHaves for when it goes. */
  announce(seq, skip) {
    for (const nb of this.nbrs.values()) {
      if (nb.peerId !== skip && (!nb.complete.has(seq) || nb.isSource)) {
        nb.haveDue.add(seq);
        if (this.now >= nb.haveNextS) this.flushHaves(nb);
      }
    }
  }

  /**
   * Send nb one have per owed seq, carrying every piece we hold now, at most once per
   * haveIntervalS: a have per verified piece per neighbour dominated the traffic, and one have a
   * little later carries all the pieces that arrived meanwhile. A have that tells nb nothing it
   * lacks (its own haves show it holds all our pieces) is not sent; except to the source, which
   * hears of every chunk we complete.
   */
  flushHaves(nb) {
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
    if (sent) nb.haveNextS = this.now + this.haveIntervalS();
  }

  drop(nb, reason, byeReason) {
    if (byeReason === ByeReason.FORGED || byeReason === ByeReason.PROTOCOL_ERROR) {
      this.banned.add(nb.peerId);
    }
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

/**
 * How often at most a have goes to one neighbour, so that haves to all of them take at most
 * haveUplinkShare of the uplink (unknown: haveIntervalS).
 */
export function haveIntervalFor(config, neighbours, uplinkBytesPerS) {
  if (!uplinkBytesPerS) return config.haveIntervalS;
  const neededS = (neighbours * config.haveWireBytes) / (config.haveUplinkShare * uplinkBytesPerS);
  return Math.min(config.maxHaveIntervalS, Math.max(config.haveIntervalS, neededS));
}

export { Role, seededRandom };
