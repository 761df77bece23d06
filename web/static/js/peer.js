// SwarmPeer: one peer's sans-I/O swarm state machine, the JavaScript twin of
// streamer/swarm/peer.py. The driver's API is in swarm.js, the core's entry module.
//
// The peer is a dispatcher: it owns the neighbour table, decodes each message and hands it to the
// module whose job it is (announcing, fetching, serving, seeding, playout, and verifying for the
// headers WebCrypto checks asynchronously), and runs what follows every input. Rules this module
// never breaks: no DOM, timers, WebRTC or clock, every call takes `now`; a malformed or hostile
// message drops only its sender (a ProtocolError inside receive becomes a DropNeighbour event,
// never an exception to the driver); nothing unverified is stored, played or forwarded;
// randomness only from the injected rng.

import { ByeReason, Capability, PROTOCOL_VERSION, ProtocolError, Role } from "./wire.js";
import { decodeMessage, encodeMessage } from "./wire.js";
import { splitPieces } from "./chunkheader.js";
import { ChunkStore, PieceResult } from "./chunkstore.js";
import { DEFAULT_CONFIG } from "./config.js";
import { DeliveredUplinkMeter, Neighbour, UplinkMeter } from "./neighbours.js";
import { Announcer } from "./announcing.js";
import { Exchange } from "./exchange.js";
import { Fetcher } from "./fetching.js";
import { Outbox } from "./outbox.js";
import { Playout } from "./playout.js";
import { maskOf, seededRandom } from "./scheduler.js";
import { Seeder } from "./seeding.js";
import { Server } from "./serving.js";
import { HeaderChecks } from "./verifying.js";

const ROLE_NAMES = ["source", "relay", "viewer"];

/** Nearest-rank percentile; null for no values. */
export function percentile(values, fraction) {
  if (values.length === 0) return null;
  const ordered = values.slice().sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(fraction * ordered.length));
  return ordered[rank - 1];
}

/**
 * nb.forgetBelow(floorSeq), and the header pushes to it below floorSeq too (Python's
 * Neighbour.forget_below evicts headers_sent; neighbours.js does not).
 */
function forgetBelow(nb, floorSeq) {
  nb.forgetBelow(floorSeq);
  for (const s of [...nb.headersSent]) if (s < floorSeq) nb.headersSent.delete(s);
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
   * @param {string} [options.peerId]  ours, as neighbours know it (signals to it are ours)
   */
  constructor({ role, now, config = {}, rng, upload = true, verifyHeaderSync = null, peerId = "" }) {
    if (![Role.SOURCE, Role.RELAY, Role.VIEWER].includes(role)) {
      throw new RangeError(`unknown role ${role}`);
    }
    this.role = role;
    this.config = Object.freeze({ ...DEFAULT_CONFIG, ...config });
    this.upload = upload || role === Role.SOURCE;
    this.store = new ChunkStore();
    this.nbrs = new Map();
    /** When the first link opened (startup_phases). */
    this.firstLinkS = null;
    this.now = now;
    this.nextWantS = role === Role.SOURCE ? null : now;
    this.uplink = new UplinkMeter();
    this.outbox = new Outbox();
    this.outbox.onDrop((nb, reason, byeReason) => this.drop(nb, reason, byeReason));
    /** What every part of the peer shares (context.py's PeerContext). */
    const ctx = { config: this.config, store: this.store, nbrs: this.nbrs, outbox: this.outbox };
    this.announcer = new Announcer(ctx, { role, uplink: this.uplink });
    this.seeder = role === Role.SOURCE ? new Seeder(ctx, { announcer: this.announcer }) : null;
    this.serving = new Server(ctx, { upload: this.upload, seeder: this.seeder });
    this.checks = new HeaderChecks(ctx, { verifyHeaderSync, peer: this });
    this.playout = new Playout(ctx, {
      checks: this.checks,
      plays: role !== Role.SOURCE,
      now,
      abandon: (seq) => this.abandon(seq),
    });
    const random = rng ?? seededRandom(0);
    this.fetching = new Fetcher(ctx, { playout: this.playout, checks: this.checks, rng: random });
    this.bytesUploaded = 0;
    this.joinedS = now;
    /** What our uplink delivers under demand (see uploadMinUplinkShare). */
    this.delivered = new DeliveredUplinkMeter();
    /** When we stopped uploading for a narrow uplink. */
    this.uploadStoppedS = null;
    this.streamBytes = 0;
    this.drops = {};
    /** Peers that sent forged or malformed data: never accepted as neighbours again. */
    this.banned = new Set();
    this.exchange = new Exchange(ctx, { ownId: peerId, banned: this.banned });
  }

  get playback() {
    return this.playout.playback;
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
    if (this.firstLinkS === null) this.firstLinkS = now;
    this.announcer.greet(nb, this.upload);
    this.exchange.greet(nb, now);
    return true;
  }

  /** The link to peerId closed (or the driver gave up on it). Its requests go elsewhere. */
  removeNeighbour(peerId, now) {
    this.now = now;
    const nb = this.nbrs.get(peerId);
    if (nb === undefined) return;
    this.nbrs.delete(peerId);
    this.fetching.forget(nb);
    this.serving.forget(nb);
    this.exchange.forget(peerId);
    this.outbox.ready.delete(peerId);
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
      this.handle(nb, decodeMessage(data), data.byteLength, now);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.drop(nb, `protocol error: ${err.message}`, ByeReason.PROTOCOL_ERROR);
    }
    this.after(now);
  }

  /** The driver's answer to a VerifyHeader event: was this header's signature the source's? */
  headerVerified(header, ok, now) {
    this.now = now;
    const replan = this.checks.verified(header, ok, now);
    if (replan === null) return;
    if (replan) this.fetching.replan();
    this.after(now);
  }

  /**
   * Source only: offer a freshly released chunk. `header` is signChunkHeader's (chunkheader.js,
   * async WebCrypto signing, so the driver signs first); data is the chunk's bytes.
   */
  publishChunk(header, data, now) {
    if (this.seeder === null) throw new Error("only the source publishes chunks");
    this.now = now;
    const seq = header.seq;
    this.store.addOwn(header, splitPieces(data, header.pieceSize));
    this.streamBytes += data.length;
    this.seeder.publish(seq, header.pieceHashes.length, now);
    const floor = seq - this.config.sourceKeepChunks + 1;
    this.store.evictBelow(floor);
    this.seeder.evictBelow(floor);
    this.serving.evictBelow(floor);
    for (const nb of this.nbrs.values()) forgetBelow(nb, floor);
    this.after(now);
  }

  // ---------------------------------------------------------------- peer exchange

  /** Up to count [peerId, via]: peers our neighbours named lately, each with the neighbour to
   * send our WebRTC offer through (sendSignal): for when no signaling server answers. */
  exchangeCandidates(count, now) {
    this.now = now;
    return this.exchange.candidates(count, now);
  }

  /** Queue a WebRTC offer, answer or ICE candidate (JSON text) for `to` on the link to neighbour
   * `via`; false if it cannot go. The driver sends ready links as after any input. */
  sendSignal(via, to, payload) {
    return this.exchange.sendSignal(via, to, payload);
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
    const out = this.serving.nextData(peerId);
    if (out !== null) {
      this.bytesUploaded += out.length;
      this.nbrs.get(peerId).bytesSent += out.length;
    }
    return out;
  }

  /** Peer ids whose requests hold an upload slot now: pump nextDataMessage for these. */
  uploadPeers() {
    return this.serving.uploadPeers();
  }

  /**
   * The link to peerId takes no more data for now (its transport buffer reached the high mark)
   * or does again. While full, its requests hold no upload slot, so the next ones are served on
   * links that can take data.
   */
  setLinkFull(peerId, full) {
    const nb = this.nbrs.get(peerId);
    if (nb !== undefined) this.serving.setLinkFull(nb, full);
  }

  /** Peer ids that got new control messages or servable data since the last call. */
  takeReady() {
    return this.outbox.takeReady();
  }

  popEvents() {
    return this.outbox.popEvents();
  }

  // ---------------------------------------------------------------- timers

  /** When handleTimer wants to run next (null: only input can change anything). */
  nextTimer() {
    const times = [
      this.announcer.nextDueS(),
      this.fetching.nextTimerS(),
      this.seeder === null ? null : this.seeder.nextTimerS(),
      this.playout.nextDeadlineS(this.now),
      this.exchange.nextDueS(),
    ];
    if (this.nextWantS !== null && this.nbrs.size < this.config.targetNeighbours) {
      times.push(this.nextWantS);
    }
    const due = times.filter((t) => t !== null);
    return due.length ? Math.min(...due) : null;
  }

  handleTimer(now) {
    this.now = now;
    this.announcer.flushDue(now);
    this.fetching.timeOuts(now);
    if (this.seeder !== null) this.seeder.handleTimer(now);
    this.exchange.flushDue(now);
    if (
      this.nextWantS !== null &&
      now >= this.nextWantS &&
      this.nbrs.size < this.config.targetNeighbours
    ) {
      const count = this.config.targetNeighbours - this.nbrs.size;
      this.outbox.emit({ kind: "WantNeighbours", count });
      this.nextWantS = now + this.config.wantNeighboursIntervalS;
    }
    // Timeouts and rescues reschedule by themselves; the clock alone changes the plan at the
    // fetcher's replan time.
    this.fetching.rescueSlow(now);
    this.fetching.replanByClock(now);
    this.after(now);
  }

  // ---------------------------------------------------------------- stats

  haveIntervalS() {
    return this.announcer.haveIntervalS();
  }

  /** Figures with the field names of `streamer watch --stats-json` (Python's, snake_case). */
  stats() {
    const pb = this.playback;
    const lags = pb ? pb.lagsS : [];
    const f = this.fetching;
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
      not_on_time: pb ? [...pb.notOnTime] : [],
      upload_stopped_s: this.uploadStoppedS === null ? null : this.uploadStoppedS - this.joinedS,
      uplink_delivered_bps:
        this.delivered.bestBytesPerS === null ? null : Math.round(this.delivered.bestBytesPerS * 8),
      bytes_from_source: f.bytesFromSource,
      bytes_from_peers: f.bytesFromPeers,
      bytes_uploaded: this.bytesUploaded,
      bytes_duplicate: f.bytesDuplicate,
      timeouts: f.timeouts,
      rescues: f.rescues,
      moved: f.moved,
      stream_bytes: this.streamBytes,
      neighbours: this.nbrs.size,
      drops: { ...this.drops },
      exchange_hints: this.exchange.hintedCount(this.now),
      signals_relayed: this.exchange.signalsRelayed,
      signals_dropped: this.exchange.signalsDropped,
      startup_phases: this.playout.startupPhases(this.firstLinkS),
    };
  }

  // ---------------------------------------------------------------- message handling

  handle(nb, msg, sizeBytes, now) {
    switch (msg.type) {
      case "piece":
        this.onPiece(nb, msg, sizeBytes, now);
        break;
      case "have":
        if (!this.onHave(nb, msg, now)) return;
        break;
      case "request":
        this.checkSeq(msg.seq, "request");
        this.serving.onRequest(nb, msg, now);
        return; // serving changes nothing we want: no rescheduling
      case "chunk_header":
        this.checkSeq(msg.seq, "chunk header");
        if (!this.checks.onHeader(nb, msg, now)) return;
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
          this.playout.heard(newest, now, !nb.isSource);
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
        this.serving.onCancel(nb, msg);
        return;
      case "absent":
        this.fetching.onAbsent(nb, msg, now);
        break;
      case "bye":
        this.forget(nb, `bye: ${msg.reason} ${msg.text}`.trim(), null);
        return;
      case "peers":
        this.exchange.onPeers(nb, msg, now);
        return;
      case "signal":
        this.exchange.onSignal(nb, msg, now);
        return;
      default:
        return; // unknown type: ignored, as the spec says
    }
    this.fetching.replan();
  }

  /** Record what nb holds; true if that may change what we ask of whom. */
  onHave(nb, msg, now) {
    this.checkSeq(msg.seq, "have");
    if (msg.seq < this.store.floorSeq) return false;
    if (!nb.announcedS.has(msg.seq)) nb.announcedS.set(msg.seq, now);
    const before = nb.knownMask(msg.seq);
    const whole = msg.pieces.every(Boolean);
    if (whole) {
      nb.complete.add(msg.seq);
      nb.partial.delete(msg.seq);
    } else if (!nb.complete.has(msg.seq)) {
      nb.partial.set(msg.seq, before | maskOf(msg.pieces));
    }
    this.playout.heard(msg.seq, now, whole && !nb.isSource);
    if (this.seeder !== null) {
      this.seeder.heardHave(nb, msg.seq, msg.pieces, before, now);
      return false;
    }
    if (!this.fetching.wantsNews(msg.seq, before, nb.knownMask(msg.seq))) {
      return false; // nothing new for us: no need to reschedule (most haves)
    }
    // Only nb holds anything new: if it has no room for more requests, the plan cannot change
    // until it has (a piece from it reschedules).
    return nb.isSource || this.fetching.room(nb) > 0;
  }

  /** A verified header from nb (isNew: new to our store); true if the plan may change. */
  headerAccepted(nb, header, isNew, now) {
    const { fresh, replan } = this.fetching.headerAccepted(nb, header, isNew, now);
    if (fresh) {
      this.playout.heard(header.seq, now);
      this.announcer.announce(header.seq, nb.peerId, now);
    }
    return replan;
  }

  /** A verified header whose senders all left meanwhile: still announce what we now hold. */
  announceNew(seq, now) {
    this.fetching.headerS.set(seq, now);
    this.playout.heard(seq, now);
    this.announcer.announce(seq, null, now);
  }

  /** A piece held during its header's check, fed in once the header is verified. */
  replayPiece(nb, msg, sizeBytes, now) {
    try {
      this.onPiece(nb, msg, sizeBytes, now, true);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.drop(nb, `protocol error: ${err.message}`, ByeReason.PROTOCOL_ERROR);
    }
  }

  onPiece(nb, msg, sizeBytes, now, replay = false) {
    if (this.fetching.onPiece(nb, msg, sizeBytes, now, replay) !== PieceResult.NEW) return;
    this.serving.wakeFor(msg.seq);
    const chunk = this.store.get(msg.seq);
    if (chunk === null) return;
    if (chunk.complete) {
      this.fetching.completed(msg.seq);
      this.outbox.emit({ kind: "ChunkComplete", seq: msg.seq, header: chunk.header, data: chunk.data() });
      this.playout.completed(chunk, now);
    }
    // Piece-level knowledge: neighbours ask us for exactly the pieces we hold.
    this.announcer.announce(msg.seq, null, now);
    this.fetching.replan();
  }

  /** A seq far beyond anything the source has signed is a lie or garbage. */
  checkSeq(seq, what) {
    const anchor = this.store.newestSeq;
    if (anchor !== null && seq > anchor + this.config.maxAheadChunks) {
      throw new ProtocolError(`${what}: seq ${seq} is far ahead of the stream (${anchor})`);
    }
  }

  // ---------------------------------------------------------------- after every input

  /** Run after every input: playout, window, scheduling. */
  after(now) {
    this.uplink.sample(this.bytesUploaded, this.serving.backlogged(now), now);
    const [due, floor] = this.playout.play(now);
    if (due) this.fetching.replan();
    if (floor !== null) this.evictBelow(floor, now);
    if (this.role !== Role.SOURCE) this.fetching.run(now);
  }

  /**
   * The driver's count of every byte its transport has delivered (acknowledged) to our
   * neighbours so far, data and control, and of the bytes it holds not yet acknowledged, all
   * links together, given every fraction of a second. A viewer whose uplink, with work, delivers
   * less than uploadMinUplinkShare of the stream's rate stops uploading: a narrow uplink that
   * uploads queues our own requests, haves and SACKs behind its pieces, and every peer waits for
   * the first copies it holds.
   */
  uplinkDelivered(deliveredBytes, outstandingBytes, now) {
    this.now = now;
    const pressed = this.serving.pressed() || outstandingBytes >= this.config.pieceSizeBytes;
    this.delivered.sample(deliveredBytes, pressed, now);
    const share = this.config.uploadMinUplinkShare;
    if (!this.upload || this.role !== Role.VIEWER || share <= 0) return;
    const best = this.delivered.bestBytesPerS;
    if (best === null) return;
    const rate = this.store.streamBytesPerS();
    if (rate === null || best >= share * rate) return;
    this.upload = false;
    this.uploadStoppedS = now;
    this.serving.stop();
    for (const nb of this.nbrs.values()) this.announcer.hello(nb, false);
  }

  /** Playout moved on: forget chunks older than the window. */
  evictBelow(floorSeq, now) {
    for (const seq of this.fetching.seqsBelow(floorSeq)) this.abandon(seq);
    this.store.evictBelow(floorSeq);
    this.fetching.evictBelow(floorSeq);
    this.serving.evictBelow(floorSeq);
    for (const nb of this.nbrs.values()) forgetBelow(nb, floorSeq);
    this.checks.evictBelow(floorSeq, now);
  }

  /** Stop fetching seq (played past it); neighbours waiting on its pieces get absent. */
  abandon(seq) {
    if (this.fetching.abandon(seq)) this.serving.wakeAll();
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
    this.outbox.emit({ kind: "DropNeighbour", peerId: nb.peerId, reason, bye });
    this.removeNeighbour(nb.peerId, this.now);
  }
}
