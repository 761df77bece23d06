// A JS swarm core driven over stdin/stdout, one JSON command per line, one JSON reply per line.
// tests/test_js.py runs Python cores against it: real wire messages both ways.
// Commands:
//   {op: "init", now, public_key, role?: "viewer" | "relay" | "source", private_key_pkcs8?}
//        (a source signs with the PKCS#8 Ed25519 key, as a JS broadcaster would)
//   {op: "add", peer, now}, {op: "remove", peer, now}, {op: "recv", peer, hex, now},
//   {op: "timer", now}, {op: "publish", seq, hex, start_s, duration_s, now} (source only),
//   {op: "stats"}.
// Reply: {out: [[peer, hex]], events: [...], timer, stats?}.
// Header signatures are checked with WebCrypto (the page's asynchronous path).
import { createInterface } from "node:readline";
import { SwarmPeer, Role, seededRandom } from "../../web/static/js/swarm.js";
import { HeaderVerifier, sha256, signChunkHeader } from "../../web/static/js/chunkheader.js";
import { fromHex, toHex } from "../../web/static/js/wire.js";
import { drainLink } from "../../web/static/js/drain.js";

const ROLES = { viewer: Role.VIEWER, relay: Role.RELAY, source: Role.SOURCE };

let core = null;
let verifier = null;
let signingKey = null;

/** Drain the core as a driver does: events (verifying headers), then every ready link. */
async function drain(now) {
  const events = [];
  for (;;) {
    const batch = core.popEvents();
    if (batch.length === 0) break;
    for (const ev of batch) {
      if (ev.kind === "VerifyHeader") {
        core.headerVerified(ev.header, await verifier.verify(ev.header), now);
        events.push({ kind: ev.kind, seq: ev.seq });
      } else if (ev.kind === "ChunkPlayed" || ev.kind === "ChunkComplete") {
        events.push({ kind: ev.kind, seq: ev.seq, sha256: toHex(sha256(ev.data)), lag_s: ev.lagS });
      } else if (ev.kind === "DropNeighbour") {
        events.push({ kind: ev.kind, peer: ev.peerId, reason: ev.reason });
      } else {
        events.push({ kind: ev.kind, seq: ev.seq, count: ev.count });
      }
    }
  }
  const out = [];
  // Serving one request may hand its upload slot to another link: go round until all is sent.
  for (let round = 0; round < 64; round++) {
    const ready = core.takeReady();
    if (ready.size === 0) break;
    for (const pid of ready) {
      for (const m of drainLink(core, pid, now)) out.push([pid, toHex(m)]);
    }
  }
  return { out, events, timer: core.nextTimer() };
}

async function init(cmd) {
  verifier = await HeaderVerifier.create(fromHex(cmd.public_key));
  const role = ROLES[cmd.role ?? "viewer"];
  if (role === undefined) throw new Error(`unknown role ${cmd.role}`);
  if (role === Role.SOURCE) {
    const der = fromHex(cmd.private_key_pkcs8);
    signingKey = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  }
  core = new SwarmPeer({ role, now: cmd.now, rng: seededRandom(1) });
}

async function publish(cmd) {
  const data = fromHex(cmd.hex);
  const header = await signChunkHeader({
    seq: cmd.seq,
    data,
    startUs: Math.round(cmd.start_s * 1e6),
    durationUs: Math.round(cmd.duration_s * 1e6),
    releaseUs: Math.round(cmd.now * 1e6),
    pieceSize: core.config.pieceSizeBytes,
    privateKey: signingKey,
  });
  core.publishChunk(header, data, cmd.now);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const cmd = JSON.parse(line);
  let reply;
  try {
    if (cmd.op === "init") {
      await init(cmd);
      reply = await drain(cmd.now);
    } else if (cmd.op === "add") {
      core.addNeighbour(cmd.peer, cmd.now);
      reply = await drain(cmd.now);
    } else if (cmd.op === "remove") {
      core.removeNeighbour(cmd.peer, cmd.now);
      reply = await drain(cmd.now);
    } else if (cmd.op === "recv") {
      core.receive(cmd.peer, fromHex(cmd.hex), cmd.now);
      reply = await drain(cmd.now);
    } else if (cmd.op === "timer") {
      core.handleTimer(cmd.now);
      reply = await drain(cmd.now);
    } else if (cmd.op === "publish") {
      await publish(cmd);
      reply = await drain(cmd.now);
    } else if (cmd.op === "stats") {
      reply = { out: [], events: [], timer: core.nextTimer(), stats: core.stats() };
    } else {
      reply = { error: `unknown op ${cmd.op}` };
    }
  } catch (err) {
    reply = { error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
