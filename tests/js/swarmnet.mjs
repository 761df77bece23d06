// A tiny discrete-event network for the JS swarm core tests: links with latency and a rate,
// flow control like a data channel's (a data message is pulled only when the link is idle),
// explicit virtual time. Headers are verified synchronously with the pure-JS Ed25519 check.
import { ed25519Verify } from "../../web/static/js/ed25519.js";
import { headerSignedBytes } from "../../web/static/js/wire.js";
import { signChunkHeader } from "../../web/static/js/chunkheader.js";
import { sendControl, sendData } from "../../web/static/js/drain.js";

export async function makeKeys() {
  const keys = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", keys.publicKey));
  return { privateKey: keys.privateKey, publicKeyRaw: raw };
}

export const syncVerifier = (publicKeyRaw) => (header) =>
  ed25519Verify(publicKeyRaw, header.signature, headerSignedBytes(header));

/** Deterministic chunk bytes for seq (differs per seq and position). */
export function chunkBytes(seq, sizeBytes) {
  const out = new Uint8Array(sizeBytes);
  let x = (seq + 1) * 2654435761;
  for (let i = 0; i < sizeBytes; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Sign one chunk of `data`: media start startS, released at releaseS (seconds). */
export function signChunk(privateKey, seq, data, { startS = seq, durationS = 1, releaseS, pieceSize = 16384 }) {
  return signChunkHeader({
    seq,
    data,
    startUs: Math.round(startS * 1e6),
    durationUs: Math.round(durationS * 1e6),
    releaseUs: Math.round(releaseS * 1e6),
    pieceSize,
    privateKey,
  });
}

/** Sign chunks 0..count-1, released at t0 + seq * durationS. */
export async function makeChunks(
  privateKey,
  count,
  { sizeBytes = 40000, durationS = 1, t0 = 100, pieceSize = 16384 } = {},
) {
  const chunks = [];
  for (let seq = 0; seq < count; seq++) {
    const data = chunkBytes(seq, sizeBytes);
    const releaseS = t0 + seq * durationS;
    const startS = seq * durationS;
    const header = await signChunk(privateKey, seq, data, { startS, durationS, releaseS, pieceSize });
    chunks.push({ seq, data, header, releaseS });
  }
  return chunks;
}

export class Net {
  constructor({ latencyS = 0.02, rateBytesPerS = 1_000_000 } = {}) {
    this.latencyS = latencyS;
    this.rateBytesPerS = rateBytesPerS;
    this.now = 0;
    this.cores = new Map();
    this.events = new Map(); // id -> all events popped
    this.links = new Map(); // "a>b" -> {busyUntil, up}
    this.queue = [];
    this.timers = new Map(); // id -> armed time
    this.dropFilter = null; // (from, to, bytes) => true to lose a message
  }

  add(id, core) {
    this.cores.set(id, core);
    this.events.set(id, []);
  }

  at(t, fn) {
    this.queue.push({ t, fn, n: this.queue.length + Math.random() * 0 });
    this.queue.sort((a, b) => a.t - b.t || a.n - b.n);
  }

  connect(a, b) {
    this.links.set(`${a}>${b}`, { busyUntil: 0, up: true });
    this.links.set(`${b}>${a}`, { busyUntil: 0, up: true });
    this.cores.get(a).addNeighbour(b, this.now);
    this.cores.get(b).addNeighbour(a, this.now);
    this.pump(a);
    this.pump(b);
  }

  disconnect(a, b) {
    for (const key of [`${a}>${b}`, `${b}>${a}`]) {
      const link = this.links.get(key);
      if (link) link.up = false;
    }
    this.cores.get(a)?.removeNeighbour(b, this.now);
    this.cores.get(b)?.removeNeighbour(a, this.now);
    this.pump(a);
    this.pump(b);
  }

  send(from, to, bytes) {
    const link = this.links.get(`${from}>${to}`);
    if (!link || !link.up) return;
    if (this.dropFilter && this.dropFilter(from, to, bytes)) return;
    const start = Math.max(this.now, link.busyUntil);
    link.busyUntil = start + bytes.length / this.rateBytesPerS;
    this.at(link.busyUntil + this.latencyS, () => {
      if (!link.up) return;
      this.cores.get(to).receive(from, bytes, this.now);
      this.pump(to);
    });
    return link.busyUntil;
  }

  /** Drain a core after input, as a real driver does. */
  pump(id) {
    const core = this.cores.get(id);
    for (const ev of core.popEvents()) {
      this.events.get(id).push(ev);
      if (ev.kind === "DropNeighbour") {
        if (ev.bye) this.send(id, ev.peerId, ev.bye);
        const peer = ev.peerId;
        this.at(this.now + 2 * this.latencyS, () => this.disconnect(id, peer));
      }
    }
    const sendFrom = (to, msg) => {
      this.send(id, to, msg);
      return true;
    };
    for (const pid of core.takeReady()) {
      sendControl(core, pid, sendFrom);
      this.pumpData(id, pid);
    }
    const t = core.nextTimer();
    if (t !== null && this.timers.get(id) !== t) {
      this.timers.set(id, t);
      this.at(Math.max(t, this.now), () => {
        if (this.timers.get(id) !== t) return;
        this.timers.delete(id);
        core.handleTimer(this.now);
        this.pump(id);
      });
    }
  }

  pumpData(id, pid) {
    const core = this.cores.get(id);
    const link = this.links.get(`${id}>${pid}`);
    if (!link || !link.up) return;
    if (link.busyUntil > this.now + 1e-9) {
      if (!link.wake) {
        link.wake = true;
        this.at(link.busyUntil, () => {
          link.wake = false;
          this.pumpData(id, pid);
        });
      }
      return;
    }
    // One message, then the link is busy for its transmission time.
    const linkFree = () => !(link.busyUntil > this.now + 1e-9);
    const sendFrom = (to, msg) => {
      this.send(id, to, msg);
      return true;
    };
    if (sendData(core, pid, this.now, sendFrom, linkFree)) {
      this.pumpData(id, pid);
      this.pump(id);
    }
  }

  run(untilS) {
    while (this.queue.length && this.queue[0].t <= untilS) {
      const { t, fn } = this.queue.shift();
      this.now = Math.max(this.now, t);
      fn();
    }
    this.now = untilS;
  }

  kinds(id, kind) {
    return this.events.get(id).filter((e) => e.kind === kind);
  }
}
