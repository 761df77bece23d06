// The page's DOM: the state overlay and badge, the stats panel, the neighbour graph (SVG).
//
// Why a module: app.js decides, ui.js shows. Every text set here goes through textContent (never
// innerHTML), since peer ids and error messages come from the network.

import {
  formatBytes,
  formatPercent,
  formatRate,
  formatSeconds,
  graphLayout,
} from "./stats.js";
import { formatPath } from "./icepath.js";

const SVG_NS = "http://www.w3.org/2000/svg";

/** Page states: title, detail, whether the overlay shows. */
export const STATES = Object.freeze({
  connecting: ["Connecting…", "Joining the channel and looking for peers.", true],
  waiting: ["Waiting for the broadcast", "Nobody is broadcasting on this channel yet.", true],
  buffering: ["Buffering…", "Fetching the first chunks from the swarm.", true],
  live: ["Live", "", false],
  stalled: ["Catching up…", "Waiting for the next chunk from the swarm.", true],
  paused: ["The broadcast paused", "No new video from the broadcaster yet; playback resumes when it sends again.", true],
  reconnecting: ["Reconnecting…", "Lost the signaling server; playback goes on with current peers.", false],
  ended: ["The broadcast has ended", "This page picks it up again if the broadcaster comes back.", true],
  unsupported: ["This browser cannot play this stream", "", true],
  error: ["Playback failed", "", true],
});

export class PageUi {
  /**
   * `root`: where the elements are (the document, or an embedded player's shadow root);
   * `stateHost`: the element whose data-state mirrors the state (the body, or the player element);
   * `onState(state, detail)`: told of every change.
   */
  constructor(root = document, { stateHost = null, onState = () => {} } = {}) {
    this.doc = root.ownerDocument ?? root; // creates elements; a shadow root cannot
    this.el = (id) => root.getElementById(id);
    this.stateHost = stateHost ?? this.doc.body;
    this.onState = onState;
    this.state = null;
    this.unmuteHandler = null;
  }

  /** Show `state` (a key of STATES); `detail` overrides the default explanation. */
  setState(state, detail) {
    const def = STATES[state] ?? STATES.error;
    this.state = state;
    const overlay = this.el("overlay");
    const badge = this.el("state-badge");
    if (overlay) {
      overlay.dataset.state = state;
      overlay.hidden = !def[2];
      this.el("overlay-title").textContent = def[0];
      this.el("overlay-detail").textContent = detail ?? def[1];
    }
    if (badge) {
      badge.dataset.state = state;
      badge.textContent = state === "live" ? "● live" : state;
      badge.title = detail ?? def[1];
    }
    this.stateHost.dataset.state = state;
    this.onState(state, detail ?? def[1]);
  }

  showUnmute(video) {
    const button = this.el("unmute");
    if (!button) return;
    button.hidden = false;
    // Unmuted some other way (the control bar, a key): the hint has done its job.
    video.addEventListener("volumechange", () => {
      if (!video.muted) button.hidden = true;
    });
    button.onclick = () => {
      video.muted = false;
      video.play().catch(() => {});
      button.hidden = true;
    };
  }

  setPeerId(peerId) {
    const el = this.el("st-peer-id");
    if (el) el.textContent = peerId ? `peer ${peerId.slice(0, 8)}` : "";
  }

  /** Refresh the panel from window.streamer.stats and the neighbour list. */
  renderStats(stats, neighbours) {
    const set = (id, text) => {
      const el = this.el(id);
      if (el) el.textContent = text;
    };
    const share = stats.peer_share;
    set("st-peer-share", formatPercent(share));
    const bar = this.el("st-peer-bar");
    if (bar) bar.style.width = `${Math.round(100 * (share ?? 0))}%`;
    set("st-down", formatRate(stats.download_bps));
    set("st-up", formatRate(stats.upload_bps));
    set("st-buffer", formatSeconds(stats.buffer_s));
    set("st-lag", formatSeconds(stats.video_lag_s ?? stats.lag_s_p50));
    set("st-continuity", formatPercent(stats.continuity));
    set("st-startup", formatSeconds(stats.startup_s));
    set("st-chunks", `${stats.chunks_played} played · ${stats.chunks_missed} missed`);
    this._renderTable(neighbours);
    this._renderGraph(neighbours);
  }

  _renderTable(neighbours) {
    const body = this.el("neighbours");
    if (!body) return;
    const rows = neighbours.map((nb) => {
      const tr = this.doc.createElement("tr");
      tr.dataset.role = nb.role;
      for (const text of [
        nb.peerId.slice(0, 8),
        nb.role,
        formatBytes(nb.bytesReceived ?? 0),
        formatBytes(nb.bytesSent ?? 0),
        formatPath(nb.path),
      ]) {
        const td = this.doc.createElement("td");
        td.textContent = text;
        tr.appendChild(td);
      }
      return tr;
    });
    if (!rows.length) {
      const tr = this.doc.createElement("tr");
      const td = this.doc.createElement("td");
      td.colSpan = 5;
      td.className = "empty";
      td.textContent = "no neighbours yet";
      tr.appendChild(td);
      rows.push(tr);
    }
    body.replaceChildren(...rows);
  }

  _renderGraph(neighbours) {
    const svg = this.el("graph");
    if (!svg) return;
    const nodes = graphLayout(neighbours);
    const maxBytes = Math.max(1, ...nodes.map((n) => (n.bytesReceived ?? 0) + (n.bytesSent ?? 0)));
    const parts = [];
    for (const n of nodes) {
      const line = this.doc.createElementNS(SVG_NS, "line");
      const traffic = ((n.bytesReceived ?? 0) + (n.bytesSent ?? 0)) / maxBytes;
      line.setAttribute("x1", "0");
      line.setAttribute("y1", "0");
      line.setAttribute("x2", n.x.toFixed(1));
      line.setAttribute("y2", n.y.toFixed(1));
      line.setAttribute("class", `edge ${n.state === "open" ? "open" : "pending"}`);
      line.setAttribute("stroke-width", (1 + 5 * traffic).toFixed(1));
      parts.push(line);
    }
    for (const n of nodes) {
      const g = this.doc.createElementNS(SVG_NS, "g");
      g.setAttribute("class", `node ${n.role}`);
      g.setAttribute("transform", `translate(${n.x.toFixed(1)} ${n.y.toFixed(1)})`);
      const c = this.doc.createElementNS(SVG_NS, "circle");
      c.setAttribute("r", "11");
      const title = this.doc.createElementNS(SVG_NS, "title");
      title.textContent = `${n.role} ${n.peerId}`;
      const label = this.doc.createElementNS(SVG_NS, "text");
      label.setAttribute("y", "24");
      label.textContent = n.role === "broadcaster" || n.role === "source" ? "source" : n.role;
      g.append(c, title, label);
      parts.push(g);
    }
    const me = this.doc.createElementNS(SVG_NS, "g");
    me.setAttribute("class", "node me");
    const c = this.doc.createElementNS(SVG_NS, "circle");
    c.setAttribute("r", "14");
    const label = this.doc.createElementNS(SVG_NS, "text");
    label.setAttribute("y", "4");
    label.textContent = "me";
    me.append(c, label);
    parts.push(me);
    svg.replaceChildren(...parts);
  }
}
