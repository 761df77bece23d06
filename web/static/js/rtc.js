// One RTCPeerConnection with one binary data channel "swarm" per neighbour (the page's transport).
//
// Why a module: the swarm core only knows peer ids and bytes. Everything WebRTC-shaped lives here:
// offer/answer and trickled ICE through the signaling server, the glare rule, staggered setup,
// setup and stall timeouts, and flow control by bufferedAmount. It speaks exactly the convention of
// docs/signaling.md and of streamer/transport/rtc.py, so pages, relays and broadcasters interoperate.
//
// Rules this module never breaks:
// - Whatever one peer sends (bad SDP, bad candidates, text frames, floods of offers) at most closes
//   that peer's connection; it never throws into the caller or touches another peer.
// - listener.onPeerClosed is called exactly once for each peer announced by connect() or by
//   onPeerOpened, and never for one that was not.
//
// Peer exchange: with connect(peerId, via) or an offer fed as handleSignal(fromId, data, via),
// every signal of that connection (answer, trickled candidates) goes through the `relay` option,
// relay(via, to, data) -> bool (the page puts it on the data channel to that neighbour), not the
// server. Glare, one link per peer and the timeouts are the same whichever way signals travel.

import { icePathFromStats } from "./icepath.js";

export const OFFERER = "offerer";
export const ANSWERER = "answerer";
/** Close reason of an offer whose relaying neighbour went before the answer came back. */
export const RELAY_GONE = "relay_gone";

const QUEUED = "queued";
const CONNECTING = "connecting";
const OPEN = "open";
const CLOSED = "closed";

const MAX_SDP_CHARS = 64 * 1024;
const MAX_CANDIDATE_CHARS = 1024;

export const DEFAULT_RTC_CONFIG = Object.freeze({
  // The ordered channel of every connection, negotiated out of band with a fixed id (both ends
  // create it; streamer.transport.rtc does the same): it opens with the SCTP association, a
  // round trip before one opened in band would open for the offerer.
  channelLabel: "swarm",
  channelId: 11,
  // The second, unordered channel, negotiated the same way: what send(..., false) uses. A
  // message on it waits for no earlier one, so a lost packet holds back only its own message.
  piecesLabel: "swarm-pieces",
  piecesChannelId: 10,
  connectTimeoutS: 15,
  maxConcurrentSetups: 3,
  setupIntervalS: 0.05,
  bufferLowBytes: 8 * 1024,
  // Two 8 KiB pieces per link at most, so a control message never waits behind much of this
  // link's data (the page's uplink gate bounds all links together). 1 MiB was seconds of queue
  // on a home uplink.
  bufferHighBytes: 16 * 1024,
  maxMessageBytes: 64 * 1024,
  maxPeers: 24,
  stallTimeoutS: 10,
  watchdogIntervalS: 0.25,
  maxPendingCandidates: 32,
  maxInboxSignals: 64,
  // "relay": TURN relays only (RTCConfiguration.iceTransportPolicy); "all": any path.
  iceTransportPolicy: "all",
});

/** Glare: both sides offered. True when our offer stands (our id sorts greater). */
export function keepsOwnOffer(localId, remoteId) {
  return localId > remoteId;
}

/**
 * Peer exchange: which of the core's candidates ([peerId, via], best first) to offer links to,
 * leaving out ourselves, peers we are linked or linking to (`exclude`) and recent failures,
 * at most `room` of them. Pure, for the page's driver and its tests.
 */
export function exchangeLinksToOpen(candidates, { ownId, exclude, room }) {
  const out = [];
  for (const [peerId, via] of candidates) {
    if (out.length >= room) break;
    if (peerId === ownId || exclude.has(peerId)) continue;
    out.push([peerId, via]);
  }
  return out;
}

/** Validate a trickled candidate signal; null for end-of-candidates, throws when malformed. */
export function parseCandidate(data) {
  const text = data.candidate;
  if (text === undefined || text === null || text === "") return null;
  if (typeof text !== "string" || text.length > MAX_CANDIDATE_CHARS) {
    throw new Error("'candidate' must be a short string");
  }
  const sdpMid = data.sdpMid ?? null;
  const sdpMLineIndex = data.sdpMLineIndex ?? null;
  if (sdpMid !== null && typeof sdpMid !== "string") throw new Error("bad sdpMid");
  if (sdpMLineIndex !== null && !Number.isInteger(sdpMLineIndex)) throw new Error("bad sdpMLineIndex");
  return {
    candidate: text,
    sdpMid,
    sdpMLineIndex: sdpMLineIndex === null && sdpMid === null ? 0 : sdpMLineIndex,
  };
}

class Peer {
  constructor(peerId, role, state, startedAtS, announced) {
    this.peerId = peerId;
    this.role = role;
    this.state = state;
    this.startedAtS = startedAtS;
    this.announced = announced;
    this.pc = null;
    this.channel = null;
    this.piecesChannel = null; // the unordered channel (negotiated: both ends make it)
    this.remoteDescriptionSet = false;
    this.pendingCandidates = [];
    this.holdsSetupSlot = false;
    this.bytesSent = 0;
    this.bytesReceived = 0;
    this.setupS = null;
    // Milliseconds from the start of setup to each step (described, answered, ice, dtls, open):
    // where a link's setup time goes (streamer.transport.rtc's PeerStats.setup_ms).
    this.setupMs = {};
    this.lastDrainedBytes = 0;
    this.lastProgressS = 0;
    this.path = null; // the selected candidate pair, from getStats() (icepath.js)
    this.via = null; // the neighbour relaying this connection's signals (peer exchange)
  }
}

/**
 * Opens, feeds and closes the data channels of one page's neighbours.
 * `signaling` needs `peerId` and `signal(to, data)`; `listener` gets onPeerOpened(id, role),
 * onPeerMessage(id, Uint8Array), onPeerWritable(id), onPeerClosed(id, reason).
 */
export class PeerManager {
  constructor(
    signaling,
    listener,
    { iceServers = [], config = {}, clock = defaultClock, relay = null } = {},
  ) {
    this.signaling = signaling;
    this.relay = relay;
    this.openedViaExchange = 0; // connections opened whose signals went through a neighbour
    this.listener = listener;
    this.config = { ...DEFAULT_RTC_CONFIG, ...config };
    this.iceServers = sanitizeIceServers(iceServers);
    this.clock = clock;
    this.peers = new Map();
    this.setupQueue = [];
    this.setupsInFlight = 0;
    this.inbox = new Map();
    this.closed = false;
    this.totalBytesSent = 0;
    this.totalBytesReceived = 0;
    this.badSignals = 0;
    this.pairTypesOpened = {}; // connections opened so far by candidate pair type
    this._setupTimer = null;
    this._watchdog = setInterval(() => this._checkTimeouts(), this.config.watchdogIntervalS * 1000);
  }

  setIceServers(servers) {
    this.iceServers = sanitizeIceServers(servers);
  }

  /**
   * Ask for a connection to peerId (we offer, queued and staggered); false if known or full.
   * With `via`, its signals go through that neighbour (the relay option), not the server.
   */
  connect(peerId, via = null) {
    if (this.closed || this.peers.has(peerId) || peerId === this.signaling.peerId) return false;
    if (this.peers.size >= this.config.maxPeers) return false;
    if (via !== null && this.relay === null) return false;
    const peer = new Peer(peerId, OFFERER, QUEUED, this.clock(), true);
    peer.via = via;
    this.peers.set(peerId, peer);
    this.setupQueue.push(peerId);
    this._pumpSetups();
    return true;
  }

  disconnect(peerId, reason = "local") {
    const peer = this.peers.get(peerId);
    if (peer) this._closePeer(peer, reason);
  }

  /** Feed one signal from the server (or, with `via`, relayed by that neighbour); processed in
   * order per peer. */
  handleSignal(fromId, data, via = null) {
    if (this.closed) return;
    let box = this.inbox.get(fromId);
    if (!box) {
      if (this.inbox.size >= this.config.maxPeers) {
        this.badSignals += 1;
        return;
      }
      box = [];
      this.inbox.set(fromId, box);
      this._drainInbox(fromId, box);
    }
    if (box.length >= this.config.maxInboxSignals) {
      this.badSignals += 1;
      return;
    }
    box.push([data, via]);
  }

  /**
   * The server says peerId is gone (it said goodbye, or did not come back within the server's
   * grace period): close its connection at once, open or not, instead of waiting for ICE.
   */
  handlePeerLeft(peerId) {
    const peer = this.peers.get(peerId);
    if (peer) this._closePeer(peer, "peer_left");
  }

  /**
   * Queue one binary message; false when the peer is not open. Check hasRoom first. Reliable;
   * in order with every other ordered message, or (ordered false, on the unordered channel once
   * it is open) delivered as soon as it is whole, ahead of anything earlier still waiting for a
   * retransmission.
   */
  send(peerId, data, ordered = true) {
    if (data.byteLength > this.config.maxMessageBytes) {
      throw new RangeError(`message of ${data.byteLength} bytes exceeds the cap`);
    }
    const peer = this.peers.get(peerId);
    if (!peer || peer.state !== OPEN || !peer.channel) return false;
    const pieces = peer.piecesChannel;
    const channel = !ordered && pieces && pieces.readyState === "open" ? pieces : peer.channel;
    try {
      channel.send(data);
    } catch {
      this._closePeer(peer, "send_failed");
      return false;
    }
    peer.bytesSent += data.byteLength;
    this.totalBytesSent += data.byteLength;
    return true;
  }

  bufferedAmount(peerId) {
    const peer = this.peers.get(peerId);
    return peer && peer.channel ? buffered(peer) : 0;
  }

  /** Bytes queued on all open links and not yet sent. */
  bufferedTotal() {
    let total = 0;
    for (const peer of this.peers.values()) {
      if (peer.state === OPEN && peer.channel) total += buffered(peer);
    }
    return total;
  }

  hasRoom(peerId) {
    const peer = this.peers.get(peerId);
    return (
      !!peer &&
      peer.state === OPEN &&
      !!peer.channel &&
      // Each channel counts alone: one at the high mark drains through bufferLowBytes, whose
      // event then finds room; a sum over both could stay at the mark while neither crosses its
      // low mark, and the link would wait for an event that never comes.
      peer.channel.bufferedAmount < this.config.bufferHighBytes &&
      (!peer.piecesChannel || peer.piecesChannel.bufferedAmount < this.config.bufferHighBytes)
    );
  }

  openPeers() {
    return [...this.peers.values()].filter((p) => p.state === OPEN).map((p) => p.peerId);
  }

  /** Open connections whose signals went through a neighbour (peer exchange). */
  openPeersViaExchange() {
    return [...this.peers.values()].filter((p) => p.state === OPEN && p.via !== null).map((p) => p.peerId);
  }

  pendingPeers() {
    return [...this.peers.values()]
      .filter((p) => p.state === QUEUED || p.state === CONNECTING)
      .map((p) => p.peerId);
  }

  peerStats(peerId) {
    const p = this.peers.get(peerId);
    if (!p) return null;
    return {
      role: p.role,
      state: p.state,
      bytesSent: p.bytesSent,
      bytesReceived: p.bytesReceived,
      setupS: p.setupS,
      setupMs: { ...p.setupMs },
      path: p.path,
    };
  }

  /**
   * Re-read every open connection's selected candidate pair and RTT (getStats()). The first path
   * found for a connection is counted in pairTypesOpened. Never throws.
   */
  async refreshPaths() {
    const open = [...this.peers.values()].filter((p) => p.state === OPEN && p.pc);
    await Promise.all(
      open.map(async (peer) => {
        const pc = peer.pc;
        let path = null;
        try {
          path = icePathFromStats(await pc.getStats());
        } catch {
          return; // closed meanwhile
        }
        if (!path || peer.pc !== pc || peer.state !== OPEN) return;
        if (peer.path === null) {
          this.pairTypesOpened[path.pair_type] = (this.pairTypesOpened[path.pair_type] ?? 0) + 1;
        }
        peer.path = path;
      }),
    );
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this._watchdog);
    if (this._setupTimer !== null) clearTimeout(this._setupTimer);
    for (const peer of [...this.peers.values()]) this._closePeer(peer, "shutdown");
  }

  // -- setup -------------------------------------------------------------------------------------

  _pumpSetups() {
    if (this._setupTimer !== null || this.closed) return;
    while (this.setupQueue.length && this.setupsInFlight < this.config.maxConcurrentSetups) {
      const peer = this.peers.get(this.setupQueue.shift());
      if (!peer || peer.state !== QUEUED) continue;
      this._takeSetupSlot(peer);
      this._offer(peer);
      if (this.setupQueue.length) {
        // Stagger: opening many connections at once is slow for everyone involved.
        this._setupTimer = setTimeout(() => {
          this._setupTimer = null;
          this._pumpSetups();
        }, this.config.setupIntervalS * 1000);
        return;
      }
    }
  }

  _takeSetupSlot(peer) {
    peer.state = CONNECTING;
    peer.startedAtS = this.clock();
    peer.holdsSetupSlot = true;
    this.setupsInFlight += 1;
  }

  _releaseSetupSlot(peer) {
    if (peer.holdsSetupSlot) {
      peer.holdsSetupSlot = false;
      this.setupsInFlight -= 1;
      this._pumpSetups();
    }
  }

  _newPc(peer) {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers,
      iceTransportPolicy: this.config.iceTransportPolicy,
    });
    peer.pc = pc;
    pc.onicecandidate = (ev) => {
      if (peer.pc !== pc || peer.state === CLOSED) return;
      const c = ev.candidate;
      const data = c
        ? { kind: "candidate", candidate: c.candidate, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex }
        : { kind: "candidate", candidate: "", sdpMid: null, sdpMLineIndex: null };
      this._sendSignal(peer, data);
    };
    pc.onconnectionstatechange = () => {
      if (peer.pc === pc && (pc.connectionState === "failed" || pc.connectionState === "closed")) {
        this._closePeer(peer, `ice_${pc.connectionState}`);
      } else if (peer.pc === pc && pc.connectionState === "connected") {
        this._setupStep(peer, "dtls");
      }
    };
    pc.oniceconnectionstatechange = () => {
      const state = pc.iceConnectionState;
      if (peer.pc === pc && (state === "connected" || state === "completed")) {
        this._setupStep(peer, "ice");
      }
    };
    return pc;
  }

  /**
   * Both channels, negotiated (both ends make them): the ordered one's opening opens the link;
   * the unordered one's messages go to the listener as the ordered one's do.
   */
  _attachChannels(peer, pc) {
    const channel = pc.createDataChannel(this.config.channelLabel, {
      ordered: true,
      negotiated: true,
      id: this.config.channelId,
    });
    peer.channel = channel;
    channel.onopen = () => {
      if (peer.channel === channel) this._onOpen(peer);
    };
    this._listenTo(peer, channel, () => peer.channel === channel);
    const pieces = pc.createDataChannel(this.config.piecesLabel, {
      ordered: false,
      negotiated: true,
      id: this.config.piecesChannelId,
    });
    peer.piecesChannel = pieces;
    this._listenTo(peer, pieces, () => peer.piecesChannel === pieces);
  }

  /** Messages, drains and the close of one of peer's channels (while current()). */
  _listenTo(peer, channel, current) {
    channel.binaryType = "arraybuffer";
    channel.bufferedAmountLowThreshold = this.config.bufferLowBytes;
    channel.onmessage = (ev) => {
      if (current()) this._onMessage(peer, ev.data);
    };
    channel.onbufferedamountlow = () => {
      if (current() && peer.state === OPEN) this._callListener(peer, "onPeerWritable", peer.peerId);
    };
    channel.onclose = () => {
      if (current()) this._closePeer(peer, "channel_closed");
    };
  }

  async _offer(peer) {
    const pc = this._newPc(peer);
    try {
      this._attachChannels(peer, pc);
      await pc.setLocalDescription(await pc.createOffer());
      if (peer.pc !== pc || peer.state === CLOSED) return;
      this._setupStep(peer, "described");
      this._sendSignal(peer, { kind: "offer", sdp: pc.localDescription.sdp });
    } catch (err) {
      if (peer.pc === pc) {
        console.warn(`offer to ${peer.peerId} failed:`, err);
        this._closePeer(peer, "setup_failed");
      }
    }
  }

  // -- signals -----------------------------------------------------------------------------------

  /** Through the neighbour relaying this connection, or the server. */
  _sendSignal(peer, data) {
    if (peer.via === null) this.signaling.signal(peer.peerId, data);
    else if (this.relay === null || !this.relay(peer.via, peer.peerId, data)) {
      console.info(`relay ${peer.via} cannot carry a signal to ${peer.peerId}`);
      // No answer can come back: say so now, not connectTimeoutS later.
      if (data.kind === "offer") this._closePeer(peer, RELAY_GONE);
    }
  }

  async _drainInbox(fromId, box) {
    // Let the caller push the first signal before we look at the box.
    await Promise.resolve();
    try {
      while (box.length && !this.closed) {
        const [data, via] = box.shift();
        try {
          await this._processSignal(fromId, data, via);
        } catch (err) {
          this.badSignals += 1;
          console.warn(`bad signal from ${fromId}:`, err?.message ?? err);
          const peer = this.peers.get(fromId);
          if (peer && peer.state !== OPEN) this._closePeer(peer, "bad_signal");
        }
      }
    } finally {
      this.inbox.delete(fromId);
    }
  }

  async _processSignal(fromId, data, via = null) {
    if (!data || typeof data !== "object") throw new Error("signal data is not an object");
    const kind = data.kind;
    if (kind === "offer" || kind === "answer") {
      const sdp = data.sdp;
      if (typeof sdp !== "string" || !sdp || sdp.length > MAX_SDP_CHARS) {
        throw new Error(`${kind} without a usable sdp`);
      }
      if (kind === "offer") await this._onOffer(fromId, sdp, via);
      else await this._onAnswer(fromId, sdp);
    } else if (kind === "candidate") {
      await this._onCandidate(fromId, data);
    }
  }

  async _onOffer(fromId, sdp, via = null) {
    let peer = this.peers.get(fromId);
    const localId = this.signaling.peerId ?? "";
    if (peer) {
      const glare = peer.role === OFFERER && !peer.remoteDescriptionSet;
      if (glare && peer.state === QUEUED) {
        this._discardAttempt(peer);
      } else if (glare && peer.state === CONNECTING) {
        if (keepsOwnOffer(localId, fromId)) return;
        this._discardAttempt(peer);
      } else {
        this._closePeer(peer, "replaced"); // the remote started over: its new offer wins
        peer = null;
      }
    }
    if (!peer) {
      if (this.peers.size >= this.config.maxPeers) return;
      peer = new Peer(fromId, ANSWERER, QUEUED, this.clock(), false);
      this.peers.set(fromId, peer);
    }
    peer.role = ANSWERER;
    peer.via = this.relay === null ? null : via; // the answer goes back the way the offer came
    this._takeSetupSlot(peer);
    const pc = this._newPc(peer);
    // Both channels are negotiated: one opened in band is a peer of another protocol version
    // (or a hostile one), refused.
    pc.ondatachannel = (ev) => ev.channel.close();
    try {
      await pc.setRemoteDescription({ type: "offer", sdp });
    } catch (err) {
      throw new Error(`unusable offer: ${err?.message ?? err}`);
    }
    peer.remoteDescriptionSet = true;
    this._attachChannels(peer, pc);
    await this._applyPendingCandidates(peer);
    await pc.setLocalDescription(await pc.createAnswer());
    if (peer.pc === pc && peer.state !== CLOSED) {
      this._setupStep(peer, "described");
      this._sendSignal(peer, { kind: "answer", sdp: pc.localDescription.sdp });
      this._setupStep(peer, "answered");
    }
  }

  async _onAnswer(fromId, sdp) {
    const peer = this.peers.get(fromId);
    if (
      !peer ||
      peer.role !== OFFERER ||
      !peer.pc ||
      peer.remoteDescriptionSet ||
      peer.pc.signalingState !== "have-local-offer"
    ) {
      return;
    }
    try {
      await peer.pc.setRemoteDescription({ type: "answer", sdp });
    } catch (err) {
      throw new Error(`unusable answer: ${err?.message ?? err}`);
    }
    peer.remoteDescriptionSet = true;
    this._setupStep(peer, "answered");
    await this._applyPendingCandidates(peer);
  }

  /** Note when a step of peer's setup happened (the first time; see Peer.setupMs). */
  _setupStep(peer, step) {
    if (!(step in peer.setupMs)) {
      peer.setupMs[step] = Math.round((this.clock() - peer.startedAtS) * 10000) / 10;
    }
  }

  async _onCandidate(fromId, data) {
    const peer = this.peers.get(fromId);
    if (!peer || !peer.pc || peer.state === CLOSED) return;
    const candidate = parseCandidate(data);
    if (candidate === null) return;
    if (!peer.remoteDescriptionSet) {
      if (peer.pendingCandidates.length < this.config.maxPendingCandidates) {
        peer.pendingCandidates.push(candidate);
      }
      return;
    }
    await this._addCandidate(peer, candidate);
  }

  async _applyPendingCandidates(peer) {
    const pending = peer.pendingCandidates;
    peer.pendingCandidates = [];
    for (const c of pending) await this._addCandidate(peer, c);
  }

  async _addCandidate(peer, candidate) {
    if (!peer.pc) return;
    try {
      await peer.pc.addIceCandidate(candidate);
    } catch {
      this.badSignals += 1; // one bad candidate is not worth the connection
    }
  }

  // -- life and death ----------------------------------------------------------------------------

  _onOpen(peer) {
    if (peer.state !== CONNECTING) return;
    const now = this.clock();
    peer.state = OPEN;
    peer.setupS = now - peer.startedAtS;
    this._setupStep(peer, "open");
    peer.lastProgressS = now;
    this._releaseSetupSlot(peer);
    peer.announced = true;
    if (peer.via !== null) this.openedViaExchange += 1;
    this._callListener(peer, "onPeerOpened", peer.peerId, peer.role);
  }

  _onMessage(peer, data) {
    if (peer.state !== OPEN) return;
    if (!(data instanceof ArrayBuffer)) {
      this._closePeer(peer, "bad_message"); // text frames are not part of the protocol
      return;
    }
    peer.bytesReceived += data.byteLength;
    this.totalBytesReceived += data.byteLength;
    this._callListener(peer, "onPeerMessage", peer.peerId, new Uint8Array(data));
  }

  _callListener(peer, method, ...args) {
    try {
      this.listener[method]?.(...args);
    } catch (err) {
      console.error(`${method}(${peer.peerId}) threw; closing that peer`, err);
      if (method !== "onPeerClosed") this._closePeer(peer, "listener_error");
    }
  }

  _discardAttempt(peer) {
    this._releaseSetupSlot(peer);
    const old = peer.pc;
    peer.pc = null;
    peer.channel = null;
    peer.piecesChannel = null;
    peer.pendingCandidates = [];
    peer.remoteDescriptionSet = false;
    peer.state = QUEUED;
    if (old) safeClose(old);
  }

  _closePeer(peer, reason) {
    if (peer.state === CLOSED) return;
    peer.state = CLOSED;
    this._releaseSetupSlot(peer);
    if (this.peers.get(peer.peerId) === peer) this.peers.delete(peer.peerId);
    const pc = peer.pc;
    peer.pc = null;
    peer.channel = null;
    peer.piecesChannel = null;
    if (pc) safeClose(pc);
    if (peer.announced) this._callListener(peer, "onPeerClosed", peer.peerId, reason);
    this._closeStrandedBy(peer.peerId);
  }

  /**
   * Offers of ours relayed by a neighbour that just went can get no answer: closed now, so the
   * caller can try another way at once. Links that have their answer (or are answering) need no
   * relay any more and are left alone.
   */
  _closeStrandedBy(goneId) {
    for (const other of [...this.peers.values()]) {
      const stranded = other.via === goneId && other.role === OFFERER && !other.remoteDescriptionSet;
      if (stranded && (other.state === QUEUED || other.state === CONNECTING)) {
        this._closePeer(other, RELAY_GONE);
      }
    }
  }

  _checkTimeouts() {
    const now = this.clock();
    const cfg = this.config;
    for (const peer of [...this.peers.values()]) {
      if (peer.state === CONNECTING) {
        if (now - peer.startedAtS > cfg.connectTimeoutS) this._closePeer(peer, "timeout");
      } else if (peer.state === QUEUED && peer.role === OFFERER) {
        if (now - peer.startedAtS > cfg.connectTimeoutS * 4) this._closePeer(peer, "timeout");
      } else if (peer.state === OPEN && peer.channel) {
        const queued = buffered(peer);
        const drained = peer.bytesSent - queued;
        if (queued === 0 || drained > peer.lastDrainedBytes) peer.lastProgressS = now;
        peer.lastDrainedBytes = drained;
        if (now - peer.lastProgressS > cfg.stallTimeoutS) this._closePeer(peer, "stalled");
      }
    }
  }
}

function defaultClock() {
  return performance.now() / 1000;
}

function safeClose(pc) {
  try {
    pc.close();
  } catch {
    /* already closed */
  }
}

/** Keep only ICE servers the browser accepts (stun:, turn:, turns: URLs). */
/** Bytes queued on both of a connection's channels and not yet sent. */
function buffered(peer) {
  return (peer.channel ? peer.channel.bufferedAmount : 0) + (peer.piecesChannel ? peer.piecesChannel.bufferedAmount : 0);
}

export function sanitizeIceServers(servers) {
  const out = [];
  for (const s of Array.isArray(servers) ? servers : []) {
    if (!s || typeof s !== "object") continue;
    const raw = Array.isArray(s.urls) ? s.urls : [s.urls];
    const urls = raw.filter((u) => typeof u === "string" && /^(stun|turns?):/.test(u));
    if (!urls.length) continue;
    const entry = { urls };
    if (typeof s.username === "string") entry.username = s.username;
    if (typeof s.credential === "string") entry.credential = s.credential;
    out.push(entry);
  }
  return out;
}
