// A JS viewer core driven over stdin/stdout, one JSON command per line, one JSON reply per line.
// tests/test_js.py runs a Python source core against it: real wire messages both ways.
// Commands: {op: "init", now, public_key}, {op: "add", peer, now}, {op: "recv", peer, hex, now},
// {op: "timer", now}, {op: "stats"}. Reply: {out: [[peer, hex]], events: [...], timer, stats?}.
// Header signatures are checked with WebCrypto (the page's asynchronous path).
import { createInterface } from "node:readline";
import { SwarmPeer, Role, seededRandom } from "../../web/static/js/swarm.js";
import { HeaderVerifier, sha256 } from "../../web/static/js/chunkheader.js";
import { fromHex, toHex } from "../../web/static/js/wire.js";

let core = null;
let verifier = null;

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
  for (const pid of core.takeReady()) {
    let m;
    while ((m = core.nextControlMessage(pid)) !== null) out.push([pid, toHex(m)]);
    while ((m = core.nextDataMessage(pid, now)) !== null) out.push([pid, toHex(m)]);
  }
  return { out, events, timer: core.nextTimer() };
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const cmd = JSON.parse(line);
  let reply;
  try {
    if (cmd.op === "init") {
      verifier = await HeaderVerifier.create(fromHex(cmd.public_key));
      core = new SwarmPeer({ role: Role.VIEWER, now: cmd.now, rng: seededRandom(1) });
      reply = await drain(cmd.now);
    } else if (cmd.op === "add") {
      core.addNeighbour(cmd.peer, cmd.now);
      reply = await drain(cmd.now);
    } else if (cmd.op === "recv") {
      core.receive(cmd.peer, fromHex(cmd.hex), cmd.now);
      reply = await drain(cmd.now);
    } else if (cmd.op === "timer") {
      core.handleTimer(cmd.now);
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
