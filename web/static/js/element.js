// <streamer-player server="https://HOST" channel="live">: the watch page's player as a custom
// element that any site can put in its own page (web/static/embed.js defines it).
//
// Why a module: the element only adapts WatchApp (app.js, the same driver as the watch page) to
// a host page: its <video> and overlay live in a shadow root, so the host's CSS cannot break them
// and ours cannot leak; the host sizes the element; a small API (play, pause, destroy, stats, and
// the events "state", "stats", "error") stands in for the watch page's window.streamer.
//
// Rules: muted autoplay (browsers allow no other), a tap unmutes; destroy() closes every peer
// connection and stops every timer, and so does taking the element out of the page.

import { WatchApp, missingBrowserFeature } from "./app.js";
import { PlayerControls } from "./controls.js";
import { PageUi } from "./ui.js";

const STATS_EVENT_INTERVAL_S = 1;
// Where the server is when the `server` attribute is left out: where this module came from.
const MODULE_ORIGIN = new URL(import.meta.url).origin;
// The control bar's look, shared with the watch page (a stylesheet needs no CORS).
const CONTROLS_CSS_URL = new URL("../controls.css", import.meta.url).href;

const STYLE = `
:host { display: block; position: relative; aspect-ratio: 16 / 9; background: #000; color: #e8eaf0;
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; overflow: hidden;
  contain: content; }
:host([hidden]) { display: none; }
.player { position: absolute; inset: 0; }
.player:focus-visible { outline: 2px solid #4fb3ff; outline-offset: -2px; }
video { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: contain; background: #000; }
.overlay { position: absolute; inset: 0; display: flex; flex-direction: column; justify-content: center;
  align-items: center; text-align: center; padding: 1rem; gap: 0.25rem; background: rgba(10, 12, 16, 0.78); }
.overlay[hidden], .unmute[hidden], .stats[hidden] { display: none; }
.title { margin: 0; font-size: 1.1em; font-weight: 600; }
.detail { margin: 0; color: #b8c0cc; max-width: 32rem; font-size: 0.9em; }
.overlay[data-state="unsupported"] .title, .overlay[data-state="error"] .title { color: #ff9a9a; }
.unmute { position: absolute; left: 0.6rem; top: 0.6rem; font: inherit; padding: 0.35rem 0.8rem;
  border: 0; border-radius: 999px; background: #000000c0; color: #fff; cursor: pointer; }
.unmute:focus-visible { outline: 2px solid #4fb3ff; outline-offset: 2px; }
.stats { position: absolute; right: 0.5rem; top: 0.5rem; z-index: 1; margin: 0; padding: 0.35rem 0.6rem;
  border-radius: 6px; background: #000000b0; font-size: 0.8em; display: grid;
  grid-template-columns: auto auto; gap: 0 0.6rem; font-variant-numeric: tabular-nums; }
.stats dt { color: #b8c0cc; }
.stats dd { margin: 0; text-align: right; }
`;

const BODY = `
<div class="player" id="player" tabindex="0"
  aria-label="Live video (keys: k play/pause, m mute, l go to live, f fullscreen)">
<video id="video" playsinline muted autoplay tabindex="-1"></video>
<div class="overlay" id="overlay" role="status" aria-live="polite">
  <p class="title" id="overlay-title">Connecting…</p>
  <p class="detail" id="overlay-detail"></p>
</div>
<button type="button" class="unmute" id="unmute" hidden>Tap to unmute</button>
<dl class="stats" id="stats" hidden aria-label="Swarm statistics">
  <dt>from peers</dt><dd id="st-peer-share">-</dd>
  <dt>download</dt><dd id="st-down">-</dd>
  <dt>upload</dt><dd id="st-up">-</dd>
  <dt>lag</dt><dd id="st-lag">-</dd>
  <dt>buffer</dt><dd id="st-buffer">-</dd>
</dl>
</div>
`;

export class StreamerPlayer extends HTMLElement {
  static observedAttributes = ["stats"];

  constructor() {
    super();
    this.app = null;
    this.destroyed = false;
    this._lastStatsEventS = 0;
    const root = this.attachShadow({ mode: "open" });
    const style = document.createElement("style");
    style.textContent = STYLE;
    const controlsCss = document.createElement("link");
    controlsCss.rel = "stylesheet";
    controlsCss.href = CONTROLS_CSS_URL;
    const body = document.createElement("template");
    body.innerHTML = BODY; // our own constant markup; nothing from the network goes in here
    root.append(style, controlsCss, body.content);
  }

  /** The figures the watch page shows (window.streamer.stats there), or null before any. */
  get stats() {
    return this.app?.lastStats ?? null;
  }

  /** The <video> in the shadow root (for sites that want its events). */
  get video() {
    return this.shadowRoot.getElementById("video");
  }

  connectedCallback() {
    if (!this.app && !this.destroyed) this._start();
  }

  disconnectedCallback() {
    this.destroy();
  }

  attributeChangedCallback(name) {
    if (name === "stats") this.shadowRoot.getElementById("stats").hidden = !this.hasAttribute("stats");
  }

  play() {
    return this.app ? this.app.resume() : Promise.resolve();
  }

  pause() {
    this.app?.pause();
  }

  /** Leave the swarm for good: every peer connection closed, nothing left running. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.app?.stop();
    this.app = null;
    this._emit("state", { state: "destroyed", detail: "" });
  }

  _start() {
    const root = this.shadowRoot;
    let controls = null;
    const ui = new PageUi(root, {
      stateHost: this,
      onState: (state, detail) => {
        controls?.setState(state);
        this._emit("state", { state, detail });
        if (state === "error" || state === "unsupported") this._emit("error", { message: detail });
      },
    });
    const missing = missingBrowserFeature();
    if (missing) {
      ui.setState("unsupported", missing);
      return;
    }
    const channel = this.getAttribute("channel") || "live";
    const serverUrl = this.getAttribute("server") || MODULE_ORIGIN;
    const video = this.video;
    ui.showUnmute(video);
    this.app = new WatchApp({
      config: { channel, ws_path: "/ws", ice_servers: [] }, // the welcome brings the ICE servers
      video,
      ui,
      serverUrl,
      onStats: (stats) => {
        controls.update(stats);
        this._onStats(stats);
      },
    });
    const container = root.getElementById("player");
    controls = new PlayerControls({ container, video, app: this.app, doc: document });
    this.app.start();
  }

  _onStats(stats) {
    const now = performance.now() / 1000;
    if (now - this._lastStatsEventS < STATS_EVENT_INTERVAL_S) return;
    this._lastStatsEventS = now;
    this._emit("stats", stats);
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }
}

if (!customElements.get("streamer-player")) customElements.define("streamer-player", StreamerPlayer);
