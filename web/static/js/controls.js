// The player's controls, on the watch page and in <streamer-player>: play/pause, mute and volume,
// "go to live" when behind, picture-in-picture, fullscreen, the state in words, and keys.
//
// Why a module: both players have the same controls; this file builds them (real <button>s and a
// range input, so screen readers and the keyboard get them for free) and maps them onto the
// <video> and WatchApp. Keys act only while focus is inside the player, never on the host page.
//
// Keys: k or space play/pause, m mute, up/down volume, l go to live, f fullscreen, p picture-in-
// picture.

/** Behind the live edge by more than this much media (s): offer "go to live". */
export const BEHIND_LIVE_S = 3;
const VOLUME_STEP = 0.1;
const SVG_NS = "http://www.w3.org/2000/svg";

// 24x24 icons: [path, "fill" | "stroke"] each (no icon font, no emoji: every system draws these).
const ICONS = Object.freeze({
  play: [["M8 5v14l11-7z", "fill"]],
  pause: [["M6 5h4v14H6zM14 5h4v14h-4z", "fill"]],
  sound: [
    ["M3 9v6h4l5 5V4L7 9z", "fill"],
    ["M15.5 8.5a5 5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13", "stroke"],
  ],
  muted: [
    ["M3 9v6h4l5 5V4L7 9z", "fill"],
    ["M16 9l6 6M22 9l-6 6", "stroke"],
  ],
  pip: [
    ["M3 5h18v14H3z", "stroke"],
    ["M12 11h7v6h-7z", "fill"],
  ],
  full: [["M4 9V4h5M15 4h5v5M20 15v5h-5M9 20H4v-5", "stroke"]],
});

/** What the viewer reads next to the buttons, per page state (ui.js STATES keys). */
export const STATE_WORDS = Object.freeze({
  connecting: "Connecting",
  waiting: "Offline",
  buffering: "Buffering",
  live: "Live",
  stalled: "Catching up",
  paused: "Broadcast paused",
  reconnecting: "Reconnecting",
  ended: "Ended",
  unsupported: "Cannot play",
  error: "Error",
});

/**
 * Whether to offer "go to live": held by the viewer, or far behind the live point: the swarm
 * core's lag once the picture follows it (behind_core_s), else the newest media (buffer_s; a
 * picture at the core's lag may have more than BEHIND_LIVE_S buffered and be live all the same).
 */
export function isBehindLive(stats, heldByViewer) {
  if (!stats || stats.state === "ended") return false;
  if (heldByViewer) return true;
  if (typeof stats.behind_core_s === "number") return stats.behind_core_s > BEHIND_LIVE_S;
  return (stats.buffer_s ?? 0) > BEHIND_LIVE_S;
}

export class PlayerControls {
  /**
   * `container`: the player box (fullscreen target, key scope) to add the bar to; `video`; `app`:
   * the WatchApp (pause, resume, goLive); `doc`: the document that creates the elements.
   */
  constructor({ container, video, app, doc = document }) {
    this.container = container;
    this.video = video;
    this.app = app;
    this.doc = doc;
    this.bar = doc.createElement("div");
    this.bar.className = "controls";
    this.bar.setAttribute("role", "group");
    this.bar.setAttribute("aria-label", "Player controls");
    this.playButton = this._button("play", "Pause", "pause", () => this.togglePlay());
    this.muteButton = this._button("mute", "Unmute", "muted", () => this.toggleMute());
    this.volume = doc.createElement("input");
    Object.assign(this.volume, { type: "range", min: "0", max: "1", step: "0.05" });
    this.volume.className = "volume";
    this.volume.setAttribute("aria-label", "Volume");
    this.volume.addEventListener("input", () => {
      this.video.volume = Number(this.volume.value);
      this.video.muted = this.video.volume === 0;
    });
    this.stateText = doc.createElement("span");
    this.stateText.className = "state-text";
    this.pageState = "connecting";
    this.liveButton = this._button("live", "Go to live", null, () => this.goLive());
    this.liveButton.textContent = "Go to live";
    this.liveButton.hidden = true;
    this.pipButton = this._button("pip", "Picture in picture", "pip", () => this.togglePip());
    this.pipButton.hidden = !(doc.pictureInPictureEnabled && video.requestPictureInPicture);
    this.fullButton = this._button("full", "Fullscreen", "full", () => this.toggleFullscreen());
    this.fullButton.hidden = !(doc.fullscreenEnabled && container.requestFullscreen);
    const spacer = doc.createElement("span");
    spacer.className = "spacer";
    this.bar.append(
      this.playButton,
      this.muteButton,
      this.volume,
      this.stateText,
      spacer,
      this.liveButton,
      this.pipButton,
      this.fullButton,
    );
    container.append(this.bar);
    for (const name of ["play", "pause", "volumechange"]) {
      video.addEventListener(name, () => this._refreshButtons());
    }
    container.addEventListener("keydown", (e) => this._onKey(e));
    this._refreshButtons();
  }

  togglePlay() {
    if (this.video.paused) this.app.resume()?.catch?.(() => {});
    else this.app.pause();
  }

  toggleMute() {
    this.video.muted = !this.video.muted;
    if (!this.video.muted && this.video.volume === 0) this.video.volume = 0.5;
  }

  goLive() {
    this.app.goLive();
    this.liveButton.hidden = true;
  }

  togglePip() {
    const doc = this.doc;
    if (doc.pictureInPictureElement) doc.exitPictureInPicture().catch(() => {});
    else this.video.requestPictureInPicture?.().catch(() => {});
  }

  toggleFullscreen() {
    const doc = this.doc;
    if (doc.fullscreenElement) doc.exitFullscreen().catch(() => {});
    else this.container.requestFullscreen?.().catch(() => {});
  }

  /** The page's state in words (ui.js calls this through its onState). */
  setState(state) {
    this.pageState = state;
    this._renderState();
  }

  /** New figures (every tick): offer "go to live" when behind. */
  update(stats) {
    this.liveButton.hidden = !isBehindLive(stats, this.app.userPaused);
    this._renderState();
  }

  _renderState() {
    // The viewer's own pause says more than the swarm's "live" behind it.
    const state = this.app.userPaused ? "held" : this.pageState;
    if (this.stateText.dataset.state === state) return;
    this.stateText.dataset.state = state;
    this.stateText.textContent = state === "held" ? "Paused" : (STATE_WORDS[state] ?? state);
  }

  _button(name, label, icon, onClick) {
    const button = this.doc.createElement("button");
    button.type = "button";
    button.className = `ctl ${name}`;
    if (icon) this._label(button, label, icon);
    button.addEventListener("click", onClick);
    return button;
  }

  _refreshButtons() {
    const paused = this.video.paused;
    this._label(this.playButton, paused ? "Play" : "Pause", paused ? "play" : "pause");
    const muted = this.video.muted || this.video.volume === 0;
    this._label(this.muteButton, muted ? "Unmute" : "Mute", muted ? "muted" : "sound");
    this.volume.value = String(muted ? 0 : this.video.volume);
  }

  _label(button, label, icon) {
    button.setAttribute("aria-label", label);
    button.title = label;
    const svg = this.doc.createElementNS(SVG_NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    for (const [d, paint] of ICONS[icon]) {
      const path = this.doc.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", paint);
      svg.append(path);
    }
    button.replaceChildren(svg);
  }

  _onKey(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const onControl = e.target instanceof HTMLElement && e.target.closest?.("button, input");
    const actions = {
      k: () => this.togglePlay(),
      " ": () => this.togglePlay(),
      m: () => this.toggleMute(),
      l: () => this.goLive(),
      f: () => this.toggleFullscreen(),
      p: () => this.togglePip(),
      ArrowUp: () => this._nudgeVolume(VOLUME_STEP),
      ArrowDown: () => this._nudgeVolume(-VOLUME_STEP),
    };
    // Space and arrows keep their own meaning on a focused button or the volume slider.
    if (onControl && [" ", "ArrowUp", "ArrowDown"].includes(e.key)) return;
    const action = actions[e.key.length === 1 ? e.key.toLowerCase() : e.key];
    if (!action) return;
    e.preventDefault();
    action();
  }

  _nudgeVolume(delta) {
    this.video.muted = false;
    this.video.volume = Math.min(1, Math.max(0, this.video.volume + delta));
  }
}
