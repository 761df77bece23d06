// The watch page's driver: wires the signaling client, the WebRTC links, the sans-I/O swarm core
// (swarm.js, the same rules as streamer/swarm) and the MSE player, and owns every timer.
//
// Why a module: the core decides (what to request, serve, play or skip), the player plays, the
// transport moves bytes; this file only connects them, like streamer/node does for Python peers:
// after every input to the core it drains events, sends control messages, pumps data messages
// while a link has room and the upload cap allows, and re-arms the core's timer.
//
// Rules: the core's clock is Unix seconds (lag against the broadcaster's release time means
// something); no chunk reaches the player before the core verified it; an exception while handling
// one neighbour's message closes that neighbour only.

import { parseMedia } from "./media.js";
import { MsePlayer, supportReport, unixNowS } from "./player.js";
import { PeerManager, exchangeLinksToOpen } from "./rtc.js";
import { RecentFailures } from "./recentfailures.js";
import { SignalingClient, serverOrder, websocketUrl } from "./signaling.js";
import { CounterRate, assembleStats } from "./stats.js";
import { HeaderVerifier } from "./chunkheader.js";
import { sendControl, sendData } from "./drain.js";
import { SwarmPeer, seededRandom } from "./swarm.js";
import { TokenBucket } from "./tokenbucket.js";
import { UplinkGate } from "./uplinkgate.js";
import { PlayerControls } from "./controls.js";
import { PageUi } from "./ui.js";
import { Role, travelsUnordered } from "./wire.js";

const STATUS_INTERVAL_S = 2;
const TICK_INTERVAL_S = 0.25;
const PIECE_MESSAGE_BYTES = 16 * 1024 + 64;
// How often links held back by the uplink gate try again (the data channels have no event for
// "all links together drained below a level").
const GATE_POLL_S = 0.02;

/**
 * Page options from the URL query: ?upload_kbps=N caps upload (0 = no upload), ?neighbours=N,
 * ?relay_only=1 connects through the server's TURN relays only.
 */
export function pageOptions(search) {
  const q = new URLSearchParams(search);
  const kbps = Number.parseFloat(q.get("upload_kbps") ?? "");
  return {
    uploadKbps: Number.isFinite(kbps) && kbps >= 0 ? kbps : null,
    targetNeighbours: clampInt(q.get("neighbours"), 1, 16, null),
    relayOnly: q.get("relay_only") === "1",
  };
}

function clampInt(text, lo, hi, fallback) {
  const n = Number.parseInt(text ?? "", 10);
  return Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

export class WatchApp {
  /**
   * `config`: the server's client config (channel, ws_path, ice_servers); `serverUrl`: the
   * signaling server's origin when the page comes from elsewhere (an embedding site), else the
   * page's own; `onStats(stats)`: called with the figures every tick.
   */
  constructor({ config, video, ui, options = {}, serverUrl = null, onStats = () => {} }) {
    this.config = config;
    this.video = video;
    this.ui = ui;
    this.options = options;
    this.onStats = onStats;
    this.stopped = false;
    this.userPaused = false;
    this.clock = unixNowS;
    this.joinedAtS = this.clock();
    this.media = null;
    this.core = null;
    this.player = null;
    this.roles = new Map(); // peerId -> role learned from the server
    this.openLinks = new Set(); // links open before the core exists, added once it does
    this.recentFailures = new RecentFailures(); // peers not offered a link again for a while
    this.timer = null;
    this.timerAtS = null;
    this.ended = false;
    this.downRate = new CounterRate();
    this.upRate = new CounterRate();
    this.uploadBucket = null;
    this.lastStats = null;
    this.uploadWake = null;
    this.uplinkGate = new UplinkGate();
    const base = serverUrl === null ? window.location : new URL(serverUrl);
    const wsPath = config.ws_path ?? "/ws";
    const others = (config.failover_urls ?? []).map((url) => websocketUrl(new URL(url), wsPath));
    const wsUrls = serverOrder(websocketUrl(base, wsPath), others);
    this.signaling = new SignalingClient(wsUrls, config.channel, this._signalingHandlers());
    this.rtc = new PeerManager(this.signaling, this._rtcListener(), {
      iceServers: config.ice_servers ?? [],
      config: options.relayOnly ? { iceTransportPolicy: "relay" } : {},
      clock: () => performance.now() / 1000,
      // Peer exchange: a WebRTC signal for `to` goes on the data channel to neighbour `via`.
      relay: (via, to, data) => {
        const core = this.core;
        if (!core) return false;
        const sent = core.sendSignal(via, to, JSON.stringify(data));
        this._service();
        return sent;
      },
    });
  }

  start() {
    this.ui.setState("connecting");
    this.signaling.connect();
    this._ticker = setInterval(() => this._tick(), TICK_INTERVAL_S * 1000);
    this._statusTimer = setInterval(() => this._sendStatus(), STATUS_INTERVAL_S * 1000);
    this._onPageHide = () => this.stop();
    window.addEventListener("pagehide", this._onPageHide);
  }

  /** Leave the swarm: say bye, close every peer connection and the player, stop every timer. */
  stop() {
    if (this.stopped) return;
    this.stopped = true;
    if (this.core) {
      const bye = this.core.leave();
      for (const id of this.rtc.openPeers()) this.rtc.send(id, bye);
    }
    window.removeEventListener("pagehide", this._onPageHide);
    clearInterval(this._ticker);
    clearInterval(this._statusTimer);
    clearTimeout(this.timer);
    clearTimeout(this.uploadWake);
    this.signaling.close();
    this.rtc.close();
    if (this.player) this.player.close();
    this.player = null;
    this.core = null;
  }

  /** A viewer's pause: the player holds still (the swarm keeps fetching) until resume(). */
  pause() {
    this.userPaused = true;
    this.player?.setHeld(true);
    this.video.pause();
  }

  resume() {
    this.userPaused = false;
    this.player?.setHeld(false);
    return this.video.play();
  }

  /** Back to the live edge at once (after a pause, or when the swarm fell behind). */
  goLive() {
    this.userPaused = false;
    this.player?.goLive();
  }

  // -- signaling ---------------------------------------------------------------------------------

  _signalingHandlers() {
    return {
      onWelcome: (w) => {
        this.ui.setPeerId(w.peerId);
        this.rtc.setIceServers(w.iceServers);
        if (w.media) this._onMedia(w.media);
        else if (!this.core) this.ui.setState("waiting");
        if (this.core && ["reconnecting", "connecting"].includes(this.ui.state)) {
          this.ui.setState(this._playingState());
        }
        this._learnPeers(w.peers);
        this._connectMore(w.peers);
      },
      onMedia: (media) => this._onMedia(media),
      onIceServers: (servers) => this.rtc.setIceServers(servers),
      onPeers: (peers) => {
        this._learnPeers(peers);
        this._connectMore(peers);
      },
      onSignal: (from, data) => this.rtc.handleSignal(from, data),
      onPeerLeft: (id) => this.rtc.handlePeerLeft(id),
      onBroadcastEnded: (reason) => {
        this.ended = true;
        this.ui.setState(
          "ended",
          reason === "broadcaster_left"
            ? "The broadcaster went away. This page resumes if it comes back."
            : undefined,
        );
      },
      onError: (code, message) => console.warn(`signaling error ${code}: ${message}`),
      onDisconnected: (retryS) => {
        if (!this.ended && this.ui.state !== "unsupported") {
          const playing = this.player?.started;
          this.ui.setState(
            playing ? "reconnecting" : "connecting",
            playing ? undefined : `Server unreachable; trying again in ${retryS.toFixed(1)} s.`,
          );
        }
      },
      onGiveUp: (reason) => this.ui.setState("error", reason),
    };
  }

  _learnPeers(peers) {
    for (const p of peers) this.roles.set(p.peerId, p.role);
  }

  _connectMore(peers) {
    if (!this.core) return; // without the key we could not verify anything yet
    const target = this._targetNeighbours();
    let have = this.rtc.openPeers().length + this.rtc.pendingPeers().length;
    const failed = this.recentFailures.ids(this.clock());
    for (const p of peers) {
      if (have >= target) break;
      if (failed.has(p.peerId)) continue;
      if (this.rtc.connect(p.peerId)) have += 1;
    }
  }

  _targetNeighbours() {
    return this.options.targetNeighbours ?? this.core?.config?.targetNeighbours ?? 8;
  }

  _onMedia(raw) {
    let media;
    try {
      media = parseMedia(raw);
    } catch (err) {
      this.ui.setState("error", `The channel's media description is unusable: ${err.message}`);
      return;
    }
    const support = supportReport(media.mimeType);
    if (!support.ok) {
      this.media = media;
      this.ui.setState("unsupported", support.reason);
      return;
    }
    this.ended = false;
    if (this.media && this.media.key === media.key && this.core) {
      if (["ended", "reconnecting", "connecting"].includes(this.ui.state)) {
        this.ui.setState(this._playingState());
      }
      return; // same broadcast (e.g. the server resent it after our reconnect)
    }
    this._resetSession();
    this.media = media;
    const now = this.clock();
    const cap = this.options.uploadKbps;
    const rateBytes = cap === null || cap === undefined ? 0 : (cap * 1000) / 8;
    this.uploadBucket = new TokenBucket(rateBytes, 4 * PIECE_MESSAGE_BYTES, now);
    this.core = new SwarmPeer({
      role: Role.VIEWER,
      now,
      upload: cap !== 0,
      // Each page its own seed, so pages do not all break ties towards the same neighbour.
      rng: seededRandom(crypto.getRandomValues(new Uint32Array(1))[0]),
      config: { chunkDurationS: media.chunkSeconds },
      peerId: this.signaling.peerId ?? "",
    });
    // WebCrypto Ed25519 when the browser has it, else the pure-JS check (plain-http LAN pages).
    this.verifier = HeaderVerifier.create(media.publicKey, { epoch: media.epoch });
    this.verifier.then(
      (v) => {
        this.verifierKind = v.verifierKind;
      },
      (err) => this.ui.setState("error", `Cannot use the broadcaster's key: ${err.message}`),
    );
    this.player = new MsePlayer(this.video, {
      onEvent: (name, detail) => this._onPlayerEvent(name, detail),
    });
    this.player.setHeld(this.userPaused);
    this.ui.setState("buffering");
    this.player.open(media.mimeType, media.initSegment).catch((err) => {
      this.ui.setState("error", `The browser could not start the player: ${err.message}`);
    });
    for (const id of this.openLinks) this._addNeighbour(id);
    this.openLinks.clear();
    this.signaling.getPeers(this._targetNeighbours(), this.rtc.openPeers());
    this._service();
  }

  _resetSession() {
    if (this.player) this.player.close();
    this.player = null;
    if (this.core) {
      for (const id of this.rtc.openPeers()) this.openLinks.add(id);
    }
    this.core = null;
    this.downRate = new CounterRate();
    this.upRate = new CounterRate();
  }

  // -- transport ---------------------------------------------------------------------------------

  _rtcListener() {
    return {
      onPeerOpened: (id) => {
        if (this.core) this._addNeighbour(id);
        else this.openLinks.add(id);
      },
      onPeerMessage: (id, data) => {
        if (!this.core) return;
        this.core.receive(id, data, this.clock());
        this._service();
      },
      onPeerWritable: (id) => {
        this._pumpData(id);
        // A link that has room again takes back its upload slot from another.
        this._service();
      },
      onPeerClosed: (id, reason) => {
        this.openLinks.delete(id);
        if (reason !== "shutdown") this.recentFailures.add(id, this.clock());
        if (this.core) {
          this.core.removeNeighbour(id, this.clock());
          this._service();
        }
      },
    };
  }

  _addNeighbour(id) {
    if (!this.core.addNeighbour(id, this.clock())) {
      this.rtc.disconnect(id, "full");
      return;
    }
    this._service();
  }

  // -- the core's outputs ------------------------------------------------------------------------

  /** After every input to the core: events, control messages, data, timer. */
  _service() {
    const core = this.core;
    if (!core) return;
    for (const ev of core.popEvents()) this._onCoreEvent(ev);
    if (this.core !== core) return;
    // Serving one request may hand its upload slot to another link (the core marks it ready):
    // go round until nothing new is ready, so that link does not wait for the next input.
    for (let round = 0; round < 16; round++) {
      const ready = core.takeReady();
      if (ready.size === 0) break;
      for (const id of ready) {
        sendControl(core, id, (peerId, msg) => this._send(peerId, msg));
        this._pumpData(id);
      }
    }
    this._armTimer();
  }

  /**
   * One message on the channel its type travels on: pieces and requests unordered (one held by
   * a retransmission holds back nothing sent after it), headers in order ahead of the haves and
   * pieces that need them.
   */
  _send(peerId, msg) {
    return this.rtc.send(peerId, msg, !travelsUnordered(msg));
  }

  _pumpData(id) {
    const core = this.core;
    if (!core) return;
    const bucket = this.uploadBucket;
    // Summed over the links once per pump, then kept up to date with what we add.
    let buffered = this.rtc.bufferedTotal();
    this.uplinkGate.observe(this.clock(), buffered, this.rtc.totalBytesSent);
    const now = this.clock();
    const maySend = () => {
      if (!this.rtc.hasRoom(id)) return false; // bufferedamountlow brings us back
      if (!bucket.canSend(PIECE_MESSAGE_BYTES, now)) {
        this._wakeForUpload(bucket.waitS(PIECE_MESSAGE_BYTES, now));
        return false;
      }
      // A link with nothing queued may always take one message: one association alone cannot
      // fill an uplink under loss (its window halves at every loss).
      if (this.rtc.bufferedAmount(id) > 0 && !this.uplinkGate.hasRoom(buffered)) {
        this._wakeForUpload(GATE_POLL_S);
        return false;
      }
      return true;
    };
    const send = (peerId, msg) => {
      bucket.take(msg.byteLength, now);
      buffered += msg.byteLength;
      return this._send(peerId, msg);
    };
    // A full link holds no upload slot: one held back by its congestion window (a lossy path)
    // must not keep the next requests off links that could carry them.
    core.setLinkFull(id, !this.rtc.hasRoom(id));
    sendData(core, id, now, send, maySend);
    core.setLinkFull(id, !this.rtc.hasRoom(id));
  }

  _wakeForUpload(waitS) {
    if (this.uploadWake !== null) return;
    this.uploadWake = setTimeout(
      () => {
        this.uploadWake = null;
        // The links whose requests hold the core's upload slots first: the most urgent.
        const first = this.core ? this.core.uploadPeers() : [];
        const rest = this.rtc.openPeers().filter((id) => !first.includes(id));
        for (const id of [...first, ...rest]) this._pumpData(id);
        this._service();
      },
      Math.max(5, waitS * 1000),
    );
  }

  _onCoreEvent(ev) {
    switch (ev.kind) {
      case "VerifyHeader":
        this._verify(ev.header);
        break;
      case "ChunkComplete": {
        // Appended as soon as verified and complete (not at its deadline, ChunkPlayed): the
        // <video> needs media ahead of the playhead to play without stalling.
        const pb = this.core.playback;
        const startSeq = pb?.startSeq ?? null;
        if (startSeq !== null) {
          this.player.expectSeq(startSeq);
          if (ev.seq < startSeq) break;
        }
        const h = ev.header;
        this.player.pushChunk(ev.seq, ev.data, {
          startS: Number(h.startUs) / 1e6,
          durationS: Number(h.durationUs) / 1e6,
          releaseS: Number(h.releaseUs) / 1e6,
        });
        break;
      }
      case "ChunkMissed":
        this.player.skipChunk(ev.seq);
        break;
      case "DropNeighbour":
        this.recentFailures.add(ev.peerId, this.clock());
        if (ev.bye) this.rtc.send(ev.peerId, ev.bye);
        this.rtc.disconnect(ev.peerId, ev.reason);
        break;
      case "WantNeighbours": {
        const known = [...this.rtc.openPeers(), ...this.rtc.pendingPeers()];
        const failed = this.recentFailures.ids(this.clock());
        const exclude = [...known, ...failed];
        if (this.signaling.connected) {
          this.signaling.getPeers(ev.count, exclude);
          break;
        }
        // No server: offer links to peers our neighbours named, through those neighbours.
        const room = Math.min(ev.count, this._targetNeighbours() - known.length);
        const candidates = this.core.exchangeCandidates(room + exclude.length, this.clock());
        const links = exchangeLinksToOpen(candidates, {
          ownId: this.signaling.peerId,
          exclude: new Set(exclude),
          room,
        });
        for (const [peerId, via] of links) this.rtc.connect(peerId, via);
        break;
      }
      case "PeerSignal": {
        let data;
        try {
          data = JSON.parse(ev.payload);
        } catch {
          this.rtc.badSignals += 1;
          break;
        }
        this.rtc.handleSignal(ev.fromPeer, data, ev.via);
        break;
      }
      case "ChunkPlayed":
        // The core's playout clock: the <video> plays its own media, at the core's lag.
        this.player.followCoreLag(ev.lagS);
        break;
      default:
        break;
    }
  }

  async _verify(header) {
    const core = this.core;
    let ok = false;
    try {
      ok = await (await this.verifier).verify(header);
    } catch {
      ok = false;
    }
    if (this.core !== core) return; // the broadcast restarted meanwhile
    core.headerVerified(header, ok, this.clock());
    this._service();
  }

  _armTimer() {
    const at = this.core?.nextTimer();
    if (at === null || at === undefined) return;
    if (this.timer !== null && this.timerAtS !== null && this.timerAtS <= at) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtS = at;
    const delayMs = Math.max(0, (at - this.clock()) * 1000);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAtS = null;
      if (!this.core) return;
      this.core.handleTimer(this.clock());
      this._service();
    }, delayMs);
  }

  // -- periodic ----------------------------------------------------------------------------------

  /**
   * What our uplink delivered, for the core to stop uploading on a narrow one (as driver.py
   * does every UPLINK_SAMPLE_S). A browser tells only what its data channels still hold, not
   * what SCTP has had acknowledged: bytes handed to SCTP count as delivered, so the rate seen
   * runs ahead of the acknowledged one by at most a congestion window.
   */
  _tellUplinkDelivered(now) {
    const buffered = this.rtc.bufferedTotal();
    this.core.uplinkDelivered(this.rtc.totalBytesSent - buffered, buffered, now);
    this._service();
  }

  _tick() {
    if (this.player) this.player.tick();
    const now = this.clock();
    if (this.core) {
      this._tellUplinkDelivered(now);
      // A safety net: the core's own timer normally does this.
      if (this.timer === null) this._armTimer();
    }
    this.lastStats = this._collectStats(now);
    this.onStats(this.lastStats);
    if (!this._lastRenderS || now - this._lastRenderS >= 1) {
      this._lastRenderS = now;
      this.ui.renderStats(this.lastStats, this.lastStats.neighbours);
    }
    if (this.player?.started && ["buffering", "live", "stalled", "paused"].includes(this.ui.state)) {
      const next = this._playingState();
      if (next !== this.ui.state) this.ui.setState(next);
    }
  }

  _playingState() {
    if (!this.player?.started) return "buffering";
    const p = this.player;
    const stalled = p.stallStartS !== null && this.clock() - p.stallStartS > 0.5;
    if (!stalled) return "live";
    // Past the live edge: the broadcaster sends nothing new (an input or encoder that stalled).
    return this.core?.playback?.waitingAtEdge ? "paused" : "stalled";
  }

  _onPlayerEvent(name, detail) {
    if (name === "autoplay-muted") this.ui.showUnmute(this.video);
    else if (name === "error") this.ui.setState("error", detail.message);
  }

  _neighbourList() {
    const list = [];
    for (const id of [...this.rtc.openPeers(), ...this.rtc.pendingPeers()]) {
      const s = this.rtc.peerStats(id);
      const nb = this.core?.neighbour?.(id);
      const role = roleName(nb?.role) ?? this.roles.get(id) ?? "viewer";
      list.push({
        peerId: id,
        role,
        state: s?.state ?? "connecting",
        bytesReceived: s?.bytesReceived ?? 0,
        bytesSent: s?.bytesSent ?? 0,
        setupS: s?.setupS ?? null,
        setupMs: s?.setupMs ?? {},
        path: s?.path ?? null,
      });
    }
    return list;
  }

  _collectStats(now) {
    const core = this.core ? this.core.stats() : null;
    const player = this.player ? this.player.stats() : null;
    const down = (core?.bytes_from_source ?? 0) + (core?.bytes_from_peers ?? 0);
    const neighbours = this._neighbourList();
    return assembleStats(core, player, {
      state: this.ui.state,
      peer_id: this.signaling.peerId,
      channel: this.config.channel,
      mime_type: this.media?.mimeType ?? null,
      verifier: this.verifierKind ?? null,
      download_bps: this.downRate.update(down, now),
      upload_bps: this.upRate.update(core?.bytes_uploaded ?? 0, now),
      upload_cap_bps: this.options.uploadKbps === null ? null : this.options.uploadKbps * 1000,
      neighbours,
      neighbour_count: neighbours.filter((n) => n.state === "open").length,
      neighbours_via_exchange: this.rtc.openPeersViaExchange().length,
      links_opened_via_exchange: this.rtc.openedViaExchange,
      neighbour_paths: Object.fromEntries(
        neighbours
          .filter((n) => n.state === "open" && n.path)
          .map((n) => [n.peerId, { ...n.path, setup_ms: n.setupMs }]),
      ),
      ice_pair_types: { ...this.rtc.pairTypesOpened },
      signaling_reconnects: this.signaling.reconnects,
      rtc_bytes_sent: this.rtc.totalBytesSent,
      rtc_bytes_received: this.rtc.totalBytesReceived,
      elapsed_s: now - this.joinedAtS,
    });
  }

  _sendStatus() {
    this.rtc.refreshPaths(); // the neighbours' ICE paths, ready for the next stats
    const s = this.lastStats;
    if (!s) return;
    const cap = this.options.uploadKbps;
    const upload = Math.round(s.upload_bps ?? 0);
    this.signaling.status({
      neighbours: this.rtc.openPeers().slice(0, 64),
      upload_bps: upload,
      spare_upload_bps:
        cap === 0 ? 0 : cap === null || cap === undefined ? null : Math.max(0, cap * 1000 - upload),
      latest_seq: this.core?.store?.newestSeq ?? null,
      stats: compactStats(s),
    });
  }
}

function roleName(role) {
  if (role === null || role === undefined) return null;
  if (typeof role === "string") return role.toLowerCase() === "source" ? "broadcaster" : role;
  return { 0: "broadcaster", 1: "relay", 2: "viewer" }[role] ?? null;
}

function compactStats(s) {
  const out = {};
  for (const key of [
    "startup_s",
    "continuity",
    "lag_s_p50",
    "lag_s_p95",
    "chunks_played",
    "chunks_late",
    "chunks_missed",
    "stall_s",
    "bytes_from_source",
    "bytes_from_peers",
    "bytes_uploaded",
    "buffer_s",
    "stalls",
  ]) {
    if (typeof s[key] === "number" && Number.isFinite(s[key])) out[key] = s[key];
  }
  return out;
}

/** Why this browser cannot be a peer (no MSE, no WebRTC), or null when it can. */
export function missingBrowserFeature(win = window) {
  if (win.MediaSource || win.ManagedMediaSource) {
    if (win.RTCPeerConnection) return null;
  }
  return supportReport("video/mp4", win).reason;
}

/** Boot on the watch page (the module is also importable by tests without side effects). */
export function boot(doc = document) {
  const configEl = doc.getElementById("streamer-config");
  const video = doc.getElementById("video");
  if (!configEl || !video) return null;
  const config = JSON.parse(configEl.textContent);
  let controls = null;
  const ui = new PageUi(doc, { onState: (state) => controls?.setState(state) });
  window.streamer = { stats: null, app: null };
  const missing = missingBrowserFeature();
  if (missing) {
    ui.setState("unsupported", missing);
    return null;
  }
  ui.showUnmute(video);
  const app = new WatchApp({
    config,
    video,
    ui,
    options: pageOptions(window.location.search),
    onStats: (stats) => {
      window.streamer.stats = stats;
      controls.update(stats);
    },
  });
  controls = new PlayerControls({ container: doc.getElementById("player"), video, app, doc });
  window.streamer.app = app;
  app.start();
  return app;
}

// Only the watch page boots here; the embeddable element (element.js) imports this module too.
if (document.getElementById("streamer-config")) boot();
