// WebSocket client of the signaling server (docs/signaling.md, version 1), for the watch page.
//
// Why a module: the server is the only way to meet neighbours, and it can restart or drop us at
// any time. This client joins as a viewer, turns every server message into one validated callback,
// fails over to the next server of its list (the page's own first, the cluster's others shuffled)
// with capped exponential backoff and full jitter, keeps its peer id across rejoins (the server
// derives it from `peer_secret`, a random string this page sends to servers only), and never
// throws into its caller on a malformed message. Open data channels are unaffected by a rejoin.
//
// Rules: no DOM; a message that fails validation is counted and ignored, never passed on.

// The signaling vocabulary, as the Python package signaling_wire declares it (a test checks they
// agree: tests/test_wire_vocabulary.py).
export const PROTOCOL_VERSION = 1;
export const ROLES = Object.freeze(["viewer", "relay", "broadcaster"]);
export const PEER_ID_RE = /^[A-Za-z0-9_-]{1,32}$/;
export const MIN_PEER_SECRET_CHARS = 16;
export const MAX_PEER_SECRET_CHARS = 256;

/**
 * Delay before reconnect attempt `attempt` (0-based): full jitter, uniform in [0, cap) with the
 * cap doubling from `baseS` to `maxS`, so the viewers of a server that went away do not all
 * come back at the same instant.
 */
export function backoffDelayS(attempt, random = Math.random, baseS = 0.5, maxS = 5) {
  const capS = Math.min(maxS, baseS * 2 ** Math.max(0, Math.min(attempt, 30)));
  return capS * random();
}

/**
 * The order this page tries its servers in: `own` (the one it loaded from, known to be up)
 * first, then the others shuffled (spreads a dead server's viewers over the rest); no repeats.
 */
export function serverOrder(own, others, random = Math.random) {
  const rest = [...new Set(others)].filter((url) => url !== own);
  for (let i = rest.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [rest[i], rest[j]] = [rest[j], rest[i]];
  }
  return [own, ...rest];
}

/** A fresh peer secret: 18 random bytes, base64url (24 chars). */
export function newPeerSecret(cryptoImpl = globalThis.crypto) {
  const bytes = cryptoImpl.getRandomValues(new Uint8Array(18));
  let text = "";
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

/**
 * The join this page sends on every (re)connect: the same secret, so the same peer id. A rejoin
 * asks for no candidates (want_peers 0): its links are still open, it asks get_peers when it
 * wants more, and a server taking a dead one's peers gets thousands of rejoins at once.
 */
export function joinMessage(channel, role, peerSecret, rejoin = false) {
  const message = { type: "join", v: PROTOCOL_VERSION, channel, role, peer_secret: peerSecret };
  if (rejoin) message.want_peers = 0;
  return message;
}

/** ws:// or wss:// URL for `path` on the page's own origin. */
export function websocketUrl(location, path = "/ws") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/** At most this many other servers are learnt from a welcome. */
export const MAX_FAILOVER_URLS = 8;

/**
 * The welcome's failover_urls (http(s) base URLs of the cluster's other servers) as WebSocket
 * URLs; anything else in the list is left out.
 */
export function parseFailoverUrls(value, path = "/ws") {
  if (!Array.isArray(value)) return [];
  const out = [];
  for (const item of value.slice(0, MAX_FAILOVER_URLS)) {
    if (typeof item !== "string") continue;
    let url;
    try {
      url = new URL(item);
    } catch {
      continue;
    }
    if (url.protocol === "http:" || url.protocol === "https:") out.push(websocketUrl(url, path));
  }
  return out;
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
        failoverUrls: parseFailoverUrls(msg.failover_urls),
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
  /** `urls`: one WebSocket URL or a list in the order to try (see serverOrder). */
  constructor(
    urls,
    channel,
    handlers,
    { role = "viewer", WebSocketImpl = WebSocket, random = Math.random, peerSecret = null } = {},
  ) {
    this.urls = Array.isArray(urls) ? [...urls] : [urls];
    this.urlIndex = 0;
    this.url = this.urls[0];
    this.random = random;
    this.peerSecret = peerSecret ?? newPeerSecret();
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
      const rejoin = this.peerId !== null;
      ws.send(JSON.stringify(joinMessage(this.channel, this.role, this.peerSecret, rejoin)));
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
        this.learnServers(msg.failoverUrls);
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

  /** Servers a welcome named: tried after ours, in this client's order, on a drop. */
  learnServers(urls) {
    const fresh = serverOrder(null, urls.filter((url) => !this.urls.includes(url)), this.random);
    this.urls.push(...fresh.slice(1));
  }

  _scheduleReconnect(reason) {
    if (this.closed || this._retryTimer !== null) return;
    // The next server first: the one we lost (or could not reach) is likely down.
    this.urlIndex = (this.urlIndex + 1) % this.urls.length;
    this.url = this.urls[this.urlIndex];
    const delayS = backoffDelayS(this.attempt, this.random);
    this.attempt += 1;
    this.reconnects += 1;
    this.handlers.onDisconnected?.(delayS, reason);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this.connect();
    }, delayS * 1000);
  }

  /** Joined to a server now (else new neighbours come through peer exchange). */
  get connected() {
    return Boolean(this.ws && this.ws.readyState === 1 && this.joined);
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
