// The JS swarm core, explicit time: mirrors the behaviour tests of the Python core.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Net, chunkBytes, makeChunks, makeKeys, syncVerifier } from "./swarmnet.mjs";
import { DEFAULT_CONFIG, SwarmPeer, Role, seededRandom, percentile } from "../../web/static/js/swarm.js";
import { HeaderVerifier } from "../../web/static/js/chunkheader.js";
import {
  ByeReason,
  Capability,
  PROTOCOL_VERSION,
  decodeMessage,
  encodeMessage,
} from "../../web/static/js/wire.js";

const keys = await makeKeys();
const CHUNKS = await makeChunks(keys.privateKey, 30);
const T0 = 100;

/**
 * CHUNKS are cut into 16 KiB pieces (room for one in flight before a rate is measured), and the
 * fixtures below expect a viewer to start one chunk behind the newest its peers hold whole.
 */
const TEST_CONFIG = { pieceSizeBytes: 16384, startPastPeersChunks: -1 };

function viewer(now, extra = {}) {
  return new SwarmPeer({
    role: Role.VIEWER,
    now,
    rng: seededRandom(7),
    verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
    ...extra,
    config: { ...TEST_CONFIG, ...extra.config },
  });
}

/** Publish CHUNKS at their release times from `source` on the net. */
function schedulePublishing(net, sourceId, count = CHUNKS.length) {
  for (const c of CHUNKS.slice(0, count)) {
    net.at(c.releaseS, () => {
      net.cores.get(sourceId).publishChunk(c.header, c.data, net.now);
      net.pump(sourceId);
    });
  }
}

const hello = (role, caps = Capability.UPLOAD | Capability.PARTIAL) =>
  encodeMessage({ type: "hello", version: PROTOCOL_VERSION, role, capabilities: caps });

/** Every control message queued for peerId, decoded. */
function drainControl(core, peerId) {
  const out = [];
  let m;
  while ((m = core.nextControlMessage(peerId)) !== null) out.push(decodeMessage(m));
  return out;
}

test("a viewer fed by the source alone plays every chunk, in order, byte-exact", () => {
  const net = new Net();
  net.now = T0 - 0.5;
  net.add("src", new SwarmPeer({ role: Role.SOURCE, now: net.now }));
  schedulePublishing(net, "src", 12);
  net.run(T0 + 2.5); // join a running stream
  net.add("v1", viewer(net.now));
  net.connect("src", "v1");
  net.run(T0 + 13); // the stream ends after chunk 11
  const played = net.kinds("v1", "ChunkPlayed");
  assert.ok(played.length >= 9, `played ${played.length}`);
  const seqs = played.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  for (const e of played) assert.deepEqual(e.data, chunkBytes(e.seq, 40000));
  const stats = net.cores.get("v1").stats();
  assert.equal(stats.continuity, 1);
  assert.equal(stats.chunks_missed, 0);
  assert.ok(stats.startup_s > 0 && stats.startup_s < 2.5, `startup ${stats.startup_s}`);
  assert.ok(stats.lag_s_p50 > 0 && stats.lag_s_p95 < 3, `lag ${stats.lag_s_p50} ${stats.lag_s_p95}`);
  assert.equal(stats.bytes_from_peers, 0);
  assert.equal(stats.bytes_from_source, 40000 * net.kinds("v1", "ChunkComplete").length);
  for (const key of ["startup_s", "continuity", "lag_s_p50", "lag_s_p95", "chunks_played",
    "chunks_missed", "bytes_from_source", "bytes_from_peers", "bytes_uploaded"]) {
    assert.ok(key in stats, key);
  }
});

test("a swarm of 6 viewers: every viewer plays, peers carry most bytes, the source stays < 2x", () => {
  const net = new Net({ rateBytesPerS: 400_000 });
  net.now = T0 - 0.5;
  net.add("src", new SwarmPeer({ role: Role.SOURCE, now: net.now }));
  const ids = ["a", "b", "c", "d", "e", "f"];
  schedulePublishing(net, "src", 20);
  net.run(T0 + 2.5);
  ids.forEach((id, i) => net.add(id, viewer(net.now, { rng: seededRandom(i + 1) })));
  for (const id of ids) net.connect("src", id);
  for (let i = 0; i < ids.length; i++) {
    for (let j = i + 1; j < ids.length; j++) net.connect(ids[i], ids[j]);
  }
  net.run(T0 + 21); // the stream ends after chunk 19
  const src = net.cores.get("src").stats();
  let fromPeers = 0;
  let total = 0;
  for (const id of ids) {
    const s = net.cores.get(id).stats();
    assert.ok(s.chunks_played >= 15, `${id} played ${s.chunks_played}`);
    assert.ok(s.continuity >= 0.95, `${id} continuity ${s.continuity}`);
    fromPeers += s.bytes_from_peers;
    total += s.bytes_from_peers + s.bytes_from_source;
  }
  assert.ok(fromPeers / total > 0.5, `share from peers ${fromPeers / total}`);
  assert.ok(src.bytes_uploaded < 2 * src.stream_bytes, `${src.bytes_uploaded} vs ${src.stream_bytes}`);
});

test("a header request that times out is cancelled and asked of the other holder", () => {
  const now = 50;
  const core = viewer(now);
  for (const id of ["p1", "p2"]) {
    core.addNeighbour(id, now);
    core.receive(id, hello(Role.VIEWER), now);
    core.receive(id, encodeMessage({ type: "buffer_map", baseSeq: 2, bits: [true, true] }), now);
  }
  const first = ["p1", "p2"].map((id) => [id, drainControl(core, id).filter((m) => m.type === "request")]);
  const seq2 = first.filter(([, reqs]) => reqs.some((m) => m.seq === 2));
  assert.equal(seq2.length, 1, "one neighbour at a time for a chunk's header");
  const [slow, reqs] = seq2[0];
  const other = slow === "p1" ? "p2" : "p1";
  // start one chunk behind the newest (startBehindChunks); header + one piece (count 1)
  const ask = reqs.find((m) => m.seq === 2);
  assert.deepEqual([ask.firstIndex, ask.count, ask.wantHeader], [0, 1, true]);
  // Nobody answers: the request for seq 2 times out after requestTimeoutS (plus the response
  // time a neighbour is granted before one is measured).
  const timeoutS = DEFAULT_CONFIG.requestTimeoutS + DEFAULT_CONFIG.initialResponseS;
  const timer = core.nextTimer();
  assert.ok(timer <= now + timeoutS + 1e-9, `timer ${timer}`);
  core.handleTimer(now + timeoutS);
  const toSlow = drainControl(core, slow);
  assert.ok(toSlow.some((m) => m.type === "cancel" && m.seq === 2), "cancel sent to the slow one");
  const toOther = drainControl(core, other);
  assert.ok(toOther.some((m) => m.type === "request" && m.seq === 2 && m.wantHeader));
  // Room for one piece each: seq 3 went to the other one, and timed out there too.
  assert.equal(core.neighbour(slow).strikes, 1);
  assert.equal(core.neighbour(other).strikes, 1);
  assert.equal(core.stats().timeouts, 2);
});

test("async verification: VerifyHeader event, pieces held meanwhile, forged header drops sender", async () => {
  const now = 300;
  const verifier = await HeaderVerifier.create(keys.publicKeyRaw);
  const core = new SwarmPeer({ role: Role.RELAY, now, rng: seededRandom(3) });
  const c = CHUNKS[8];
  core.addNeighbour("p", now);
  core.addNeighbour("q", now);
  core.receive("p", hello(Role.RELAY), now);
  core.receive("q", hello(Role.RELAY), now);
  core.receive("p", encodeMessage({ type: "have", seq: 8, pieces: [true, true, true] }), now);
  core.receive("p", encodeMessage(c.header), now + 0.05);
  for (let index = 0; index < 3; index++) {
    const payload = c.data.slice(index * 16384, Math.min(40000, (index + 1) * 16384));
    core.receive("p", encodeMessage({ type: "piece", seq: 8, index, count: 3, payload }), now + 0.06);
  }
  let events = core.popEvents();
  const verify = events.filter((e) => e.kind === "VerifyHeader");
  assert.equal(verify.length, 1);
  assert.equal(events.filter((e) => e.kind === "ChunkComplete").length, 0, "nothing stored unverified");
  assert.equal(core.nextDataMessage("q", now + 0.06), null);
  core.headerVerified(verify[0].header, await verifier.verify(verify[0].header), now + 0.07);
  events = core.popEvents();
  const complete = events.filter((e) => e.kind === "ChunkComplete");
  assert.equal(complete.length, 1);
  assert.deepEqual(complete[0].data, c.data);
  assert.equal(core.stats().bytes_from_peers, 40000);
  // A forged header (other bytes, same seq) from q: checked, then q is dropped.
  const forged = encodeMessage(c.header).slice();
  forged[9] ^= 0x01;
  core.receive("q", forged, now + 0.1);
  const verify2 = core.popEvents().filter((e) => e.kind === "VerifyHeader");
  assert.equal(verify2.length, 1);
  const ok = await verifier.verify(verify2[0].header);
  assert.equal(ok, false);
  core.headerVerified(verify2[0].header, ok, now + 0.11);
  const drops = core.popEvents().filter((e) => e.kind === "DropNeighbour");
  assert.deepEqual(drops.map((d) => d.peerId), ["q"]);
  assert.equal(decodeMessage(drops[0].bye).reason, ByeReason.FORGED);
});

test("playback skips a chunk that never comes and goes on; continuity counts it", () => {
  const net = new Net();
  net.now = T0 - 0.5;
  net.add("src", new SwarmPeer({ role: Role.SOURCE, now: net.now }));
  schedulePublishing(net, "src", 12);
  net.run(T0 + 2.5);
  net.add("v", viewer(net.now));
  net.connect("src", "v");
  // Every piece of chunk 4 is lost on the way: the viewer stalls for it up to maxStallS, then
  // skips it (it never stalls forever); the stall delays every later chunk by as much.
  net.dropFilter = (from, to, bytes) => bytes[0] === 0x06 && new DataView(bytes.buffer, bytes.byteOffset).getUint32(1) === 4;
  net.run(T0 + 13 + DEFAULT_CONFIG.maxStallS); // the stream ends after chunk 11
  const missed = net.kinds("v", "ChunkMissed").map((e) => e.seq);
  assert.deepEqual(missed, [4]);
  const played = net.kinds("v", "ChunkPlayed").map((e) => e.seq);
  assert.ok(played.includes(3) && played.includes(5) && played.includes(9), `played ${played}`);
  const s = net.cores.get("v").stats();
  assert.equal(s.chunks_missed, 1);
  assert.equal(s.stall_s, DEFAULT_CONFIG.maxStallS, "stalled for chunk 4 only, maxStallS in all");
  assert.deepEqual(
    s.not_on_time.map((x) => [x.seq, x.played]),
    [[4, false]],
    "the skipped chunk is on record",
  );
  assert.equal(s.continuity, s.chunks_played / (s.chunks_played + s.chunks_late + 1));
});

