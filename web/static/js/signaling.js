// WebSocket client of the signaling server (docs/signaling.md, version 1), for the watch page.
//
// Why a module: the server is the only way to meet neighbours, and it can restart or drop us at
// any time. This client joins as a viewer, turns every server message into one validated callback,
// reconnects with capped, jittered backoff (a fresh join: the server gives a new peer id, open data
// channels are unaffected) and never throws into its caller on a malformed message.
//
// Rules: no DOM; a message that fails validation is counted and ignored, never passed on.

// The signaling vocabulary, as the Python package signaling_wire declares it (a test checks they
// agree: tests/test_wire_vocabulary.py).
export const PROTOCOL_VERSION = 1;
export const ROLES = Object.freeze(["viewer", "relay", "broadcaster"]);
export const PEER_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;

/** Delay before reconnect attempt `attempt` (0-based): 0.5 s doubling to `maxS`, +-25 % jitter. */
export function backoffDelayS(attempt, random = Math.random, baseS = 0.5, maxS = 10) {
  const raw = Math.min(maxS, baseS * 2 ** Math.max(0, attempt));
  return raw * (0.75 + 0.5 * random());
}

/** ws:// or wss:// URL for `path` on the page's own origin. */
export function websocketUrl(location, path = "/ws") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

function isPeerId(value) {
  return typeof value === "string" && PEER_ID_RE.test(value);
}

function parsePeers(value) {
  if (!Array.isArray(value)) return [];
  const out = [];
  for (const p of value.slice(0, 64)) {
    if (p && isPeerId(p.peer_id)) {
      const role = ROLES.includes(p.role) ? p.role : "viewer";
      const latestSeq = Number.isInteger(p.latest_seq) ? p.latest_seq : null;
      out.push({ peerId: p.peer_id, role, latestSeq });
    }
  }
  return out;
}

/**
 * Validate one server message. Returns `{type, ...}` with camelCase fields, or null when the
 * message is malformed or of a type the page does not use.
 */
export function parseServerMessage(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return null;
  }
  if (!msg || typeof msg !== "object" || typeof msg.type !== "string") return null;
  switch (msg.type) {
    case "welcome":
      if (!isPeerId(msg.peer_id)) return null;
      return {
        type: "welcome",
        peerId: msg.peer_id,
        channel: String(msg.channel ?? ""),
        iceServers: Array.isArray(msg.ice_servers) ? msg.ice_servers : [],
        media: msg.media && typeof msg.media === "object" ? msg.media : null,
        peers: parsePeers(msg.peers),
        heartbeatS: typeof msg.heartbeat_s === "number" ? msg.heartbeat_s : 20,
      };
    case "media":
      if (!msg.media || typeof msg.media !== "object") return null;
      return { type: "media", media: msg.media };
    case "peers":
      return { type: "peers", peers: parsePeers(msg.peers) };
    case "signal":
      if (!isPeerId(msg.from) || !msg.data || typeof msg.data !== "object") return null;
      return { type: "signal", from: msg.from, data: msg.data };
    case "peer_left":
      if (!isPeerId(msg.peer_id)) return null;
      return { type: "peer_left", peerId: msg.peer_id };
    case "broadcast_ended":
      return { type: "broadcast_ended", reason: String(msg.reason ?? "ended") };
    case "ice_servers":
      if (!Array.isArray(msg.ice_servers)) return null;
      return { type: "ice_servers", iceServers: msg.ice_servers };
    case "error":
      return {
        type: "error",
        code: String(msg.code ?? "unknown"),
        message: String(msg.message ?? ""),
        fatal: msg.fatal === true,
      };
    case "pong":
      return { type: "pong" };
    default:
      return null;
  }
}

/** Error codes after which reconnecting cannot help. */
const PERMANENT_ERRORS = new Set(["bad_channel_name", "unsupported_version", "channel_full"]);

/**
 * The page's signaling connection. `handlers` may define onWelcome(w), onMedia(media),
 * onPeers(peers), onSignal(from, data), onPeerLeft(id), onBroadcastEnded(reason),
 * onIceServers(servers) (fresh TURN credentials), onError(code, message), onDisconnected(retryInS), onGiveUp(reason).
 */
export class SignalingClient {
  constructor(url, channel, handlers, { role = "viewer", WebSocketImpl = WebSocket } = {}) {
    this.url = url;
    this.channel = channel;
    this.role = role;
    this.handlers = handlers;
    this.WebSocketImpl = WebSocketImpl;
    this.ws = null;
    this.peerId = null;
    this.joined = false;
    this.attempt = 0;
    this.closed = false;
    this.badMessages = 0;
    this.reconnects = 0;
    this._retryTimer = null;
  }

  connect() {
    if (this.closed) return;
    let ws;
    try {
      ws = new this.WebSocketImpl(this.url);
    } catch (err) {
      this._scheduleReconnect(`cannot open ${this.url}: ${err}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      ws.send(
        JSON.stringify({ type: "join", v: PROTOCOL_VERSION, channel: this.channel, role: this.role }),
      );
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws || typeof ev.data !== "string") return;
      this._dispatch(ev.data);
    };
    ws.onclose = () => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.joined = false;
      this._scheduleReconnect("connection closed");
    };
    ws.onerror = () => {};
  }

  _dispatch(text) {
    const msg = parseServerMessage(text);
    if (msg === null) {
      this.badMessages += 1;
      return;
    }
    const h = this.handlers;
    switch (msg.type) {
      case "welcome":
        this.peerId = msg.peerId;
        this.joined = true;
        this.attempt = 0;
        h.onWelcome?.(msg);
        break;
      case "media":
        h.onMedia?.(msg.media);
        break;
      case "peers":
        h.onPeers?.(msg.peers);
        break;
      case "signal":
        h.onSignal?.(msg.from, msg.data);
        break;
      case "peer_left":
        h.onPeerLeft?.(msg.peerId);
        break;
      case "broadcast_ended":
        h.onBroadcastEnded?.(msg.reason);
        break;
      case "ice_servers":
        h.onIceServers?.(msg.iceServers);
        break;
      case "error":
        h.onError?.(msg.code, msg.message);
        if (msg.fatal && PERMANENT_ERRORS.has(msg.code)) {
          this.close();
          h.onGiveUp?.(`${msg.code}: ${msg.message}`);
        }
        break;
      default:
        break;
    }
  }

  _scheduleReconnect(reason) {
    if (this.closed || this._retryTimer !== null) return;
    const delayS = backoffDelayS(this.attempt);
    this.attempt += 1;
    this.reconnects += 1;
    this.handlers.onDisconnected?.(delayS, reason);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this.connect();
    }, delayS * 1000);
  }

  /** Send one JSON message; false when not joined (it is dropped: signaling is best effort). */
  send(message) {
    if (!this.ws || this.ws.readyState !== 1 || !this.joined) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  signal(to, data) {
    return this.send({ type: "signal", to, data });
  }

  getPeers(count, exclude = []) {
    return this.send({
      type: "get_peers",
      count: Math.max(1, Math.min(32, count)),
      exclude: exclude.slice(0, 256),
    });
  }

  status(fields) {
    return this.send({ type: "status", ...fields });
  }

  close() {
    this.closed = true;
    if (this._retryTimer !== null) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      try {
        ws.close(1000, "bye");
      } catch {
        /* already closed */
      }
    }
  }
}
