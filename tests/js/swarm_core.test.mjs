// The JS swarm core with explicit time, message by message: what tests/test_swarm.py checks of the
// Python core is tested once for both in tests/conformance/scenarios/ (run here by
// conformance.test.mjs); this file keeps the JS core's own cases (Playback's unit rules, internal
// tables, header pushes through the announcer). Small chunks: 4,500 bytes in 1,000-byte pieces
// (5 pieces), as in the scenarios.
import { test } from "node:test";
import assert from "node:assert/strict";
import { makeKeys, signChunk, syncVerifier } from "./swarmnet.mjs";
import { exchange } from "./helpers.mjs";
import { DEFAULT_CONFIG, SwarmPeer, Role, seededRandom } from "../../web/static/js/swarm.js";
import { Playback } from "../../web/static/js/playback.js";
import {
  Capability,
  PROTOCOL_VERSION,
  decodeMessage,
  encodeMessage,
} from "../../web/static/js/wire.js";

const keys = await makeKeys();
// startPastPeersChunks -1: most fixtures below expect a viewer to start one chunk behind the
// newest its peers hold whole (two chunks in the window); the start rule's own tests use 1.
const CONFIG = {
  pieceSizeBytes: 1000,
  defaultChunkBytes: 4000,
  minInflightBytes: 4000,
  startPastPeersChunks: -1,
};
const START_CONFIG = { ...CONFIG, startPastPeersChunks: DEFAULT_CONFIG.startPastPeersChunks };
const SIZE_BYTES = 4500;

const fill = (seq, sizeBytes = SIZE_BYTES) => new Uint8Array(sizeBytes).fill(seq % 256);

/** Signed chunks, cached by seq/release time (WebCrypto signing is asynchronous). */
const signedCache = new Map();
async function signed(seq, releaseS, data = fill(seq)) {
  const key = `${seq}@${releaseS}/${data[0]}`;
  if (!signedCache.has(key)) {
    const header = await signChunk(keys.privateKey, seq, data, {
      startS: seq,
      releaseS,
      pieceSize: 1000,
    });
    signedCache.set(key, { header, data });
  }
  return signedCache.get(key);
}

function viewer(now = 0, config = CONFIG) {
  return new SwarmPeer({
    role: Role.VIEWER,
    now,
    config,
    rng: seededRandom(5),
    verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
  });
}

function relay(now = 0, config = CONFIG) {
  return new SwarmPeer({
    role: Role.RELAY,
    now,
    config,
    rng: seededRandom(6),
    verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
  });
}

const source = (now = 0) => new SwarmPeer({ role: Role.SOURCE, now, config: CONFIG });

/** A source holding chunks seqs (4,500 bytes each: 5 pieces), all released at `now`. */
async function published(seqs, now = 10) {
  const src = source();
  for (const seq of seqs) {
    const c = await signed(seq, now);
    src.publishChunk(c.header, c.data, now);
  }
  return src;
}

const range = (lo, hi) => Array.from({ length: hi - lo }, (_, i) => lo + i);
const hello = (role, capabilities = Capability.UPLOAD | Capability.PARTIAL) =>
  encodeMessage({ type: "hello", version: PROTOCOL_VERSION, role, capabilities });
const have = (seq, pieces) => encodeMessage({ type: "have", seq, pieces });
const bufferMap = (baseSeq, bits) => encodeMessage({ type: "buffer_map", baseSeq, bits });
const request = (seq, firstIndex, count, wantHeader) =>
  encodeMessage({ type: "request", seq, firstIndex, count, wantHeader });

/** Open links from core to viewers pids, take their hellos, drop what core sent so far. */
function greet(core, pids, now) {
  for (const pid of pids) {
    link(core, [[pid, Role.VIEWER]], now);
    drainControl(core, pid);
  }
}

/** Open links from core to neighbours [[pid, role], ...] and take their hellos. */
function link(core, neighbours, now) {
  for (const [pid, role] of neighbours) {
    core.addNeighbour(pid, now);
    core.receive(pid, hello(role), now);
  }
}

function drainControl(core, pid) {
  const out = [];
  let m;
  while ((m = core.nextControlMessage(pid)) !== null) out.push(decodeMessage(m));
  return out;
}

function drainData(core, pid, now) {
  const out = [];
  let m;
  while ((m = core.nextDataMessage(pid, now)) !== null) out.push(m);
  return out;
}

const ofType = (msgs, type) => msgs.filter((m) => m.type === type);
const kinds = (events, kind) => events.filter((e) => e.kind === kind);

function connect(a, aId, b, bId, now) {
  assert.ok(a.addNeighbour(bId, now) && b.addNeighbour(aId, now));
  for (const m of drainRaw(a, bId)) b.receive(aId, m, now);
  for (const m of drainRaw(b, aId)) a.receive(bId, m, now);
}

function drainRaw(core, pid) {
  const out = [];
  let m;
  while ((m = core.nextControlMessage(pid)) !== null) out.push(m);
  return out;
}


test("Playback: starts targetLagS after release, skips a chunk that never comes", () => {
  const pb = new Playback({ chunkDurationS: 1, startBehindChunks: 0, joinedS: 0, targetLagS: 1 });
  pb.hearOf(7);
  assert.equal(pb.startIfReady(0.5, true, 7.0, 0.2), true);
  assert.ok(Math.abs(pb.playStartS - 1.2) < 1e-12);
  const held = new Set([7, 9]);
  const out = pb.due(
    3.3,
    (s) => s,
    (s) => held.has(s),
  );
  assert.deepEqual(out, [
    [7, true],
    [8, false],
    [9, true],
  ]);
  assert.equal(pb.continuity, 2 / 3);
  assert.ok(Math.abs(pb.startupS - 1.2) < 1e-12);
  // Never later than now + targetLagS (a source clock far ahead), never before now.
  const ahead = new Playback({ chunkDurationS: 1, startBehindChunks: 0, joinedS: 0, targetLagS: 1 });
  ahead.hearOf(0);
  ahead.startIfReady(5, true, 0, 500);
  assert.equal(ahead.playStartS, 6);
  const behind = new Playback({ chunkDurationS: 1, startBehindChunks: 0, joinedS: 0, targetLagS: 1 });
  behind.hearOf(0);
  behind.startIfReady(5, true, 0, 1);
  assert.equal(behind.playStartS, 5);
});

test("a timeout on pieces the neighbour did not hold yet is no strike", async () => {
  const c = await signed(3, 0);
  const v = viewer(0);
  v.addNeighbour("p", 0);
  v.receive("p", hello(Role.RELAY), 0);
  // p has verified the header and holds piece 0 only (its have), so it is an earlier receiver.
  v.receive("p", have(3, [true, false, false, false, false]), 0);
  const [first] = ofType(drainControl(v, "p"), "request");
  assert.deepEqual([first.seq, first.firstIndex, first.count, first.wantHeader], [3, 0, 1, true]);
  v.receive("p", encodeMessage(c.header), 0.05);
  const piece0 = c.data.slice(0, 1000);
  v.receive("p", encodeMessage({ type: "piece", seq: 3, index: 0, count: 5, payload: piece0 }), 0.1);
  // Chunk 3 is urgent (due within urgentS): the earlier receiver is asked for the rest.
  // (room: 4 pieces in flight, so pieces 1-3 at the header and piece 4 once piece 0 arrived)
  const rest = ofType(drainControl(v, "p"), "request");
  const asked = rest.flatMap((m) => range(m.firstIndex, m.firstIndex + m.count));
  assert.deepEqual(asked.sort(), [1, 2, 3, 4]);
  assert.ok(rest.every((m) => m.seq === 3 && !m.wantHeader));
  assert.equal(v.neighbour("p").assignments.get(3).strikeOnTimeout, false);
  let now = 0.1;
  for (let i = 0; i < 40 && v.stats().timeouts < 3; i++) {
    now = Math.max(now, v.nextTimer());
    v.handleTimer(now);
  }
  assert.ok(v.stats().timeouts >= 3, `timeouts ${v.stats().timeouts}`);
  assert.equal(v.neighbour("p").strikes, 0);
  assert.deepEqual(v.neighbourIds, ["p"], "not dropped: it never held what was asked");
});

test("haves after verified pieces, coalesced per haveIntervalS; a piece got elsewhere is cancelled", async () => {
  const c = await signed(3, 0);
  const v = viewer(0);
  for (const pid of ["a", "b", "w"]) {
    v.addNeighbour(pid, 0);
    v.receive(pid, hello(Role.VIEWER), 0);
  }
  v.receive("a", have(3, [true, true, true, true, true]), 0);
  v.receive("b", have(3, [true, true, true, true, true]), 0);
  const headerAsk = ["a", "b"].find((pid) => v.neighbour(pid).assignments.has(3));
  drainControl(v, "w");
  v.receive(headerAsk, encodeMessage(c.header), 0.01);
  // The header verified: w (who holds nothing) hears of it at once, with no piece yet.
  assert.deepEqual(
    ofType(drainControl(v, "w"), "have").map((h) => h.pieces),
    [[false, false, false, false, false]],
  );
  const piece = (index) =>
    encodeMessage({
      type: "piece",
      seq: 3,
      index,
      count: 5,
      payload: c.data.slice(index * 1000, Math.min(SIZE_BYTES, (index + 1) * 1000)),
    });
  v.receive(headerAsk, piece(0), 0.02);
  // Pieces 1..4 now go to a and b (piece by piece, by room); find who was asked for piece 4.
  const owner = v.fetching.inflight.get(3).get(4);
  assert.ok(owner === "a" || owner === "b");
  const giver = owner === "a" ? "b" : "a";
  for (const pid of ["a", "b"]) drainControl(v, pid);
  v.receive(giver, piece(4), 0.03);
  const toOwner = ofType(drainControl(v, owner), "cancel");
  assert.deepEqual(
    toOwner.map((m) => [m.seq, m.firstIndex, m.count]),
    [[3, 4, 1]],
  );
  assert.equal(v.neighbour(owner).assignments.get(3)?.pieces.has(4) ?? false, false);
  // Pieces 0 and 4 came within haveIntervalS of the first have: one have carries both, later.
  assert.deepEqual(ofType(drainControl(v, "w"), "have"), []);
  const due = 0.01 + DEFAULT_CONFIG.haveIntervalS;
  assert.ok(v.nextTimer() <= due + 1e-9, `timer ${v.nextTimer()}`);
  v.handleTimer(due);
  assert.deepEqual(
    ofType(drainControl(v, "w"), "have").map((h) => [h.seq, h.pieces]),
    [[3, [true, false, false, false, true]]],
  );
  // a and b hold the whole chunk: they are never told what they have.
  assert.deepEqual(ofType(drainControl(v, "a").concat(drainControl(v, "b")), "have"), []);
});

test("the source offers fewer first copies to a neighbour that asks late", async () => {
  // The same case as tests/test_seeding.py's.
  const src = source();
  greet(src, ["v0", "v1", "v2"], 0);
  const asksAfterS = { v0: 0.1, v1: 0.1, v2: 0.6 };
  const counts = { v0: 0, v1: 0, v2: 0 };
  for (let seq = 0; seq < 8; seq++) {
    const now = 1 + seq;
    const c = await signed(seq, now);
    src.publishChunk(c.header, c.data, now); // 5 pieces
    const offered = {};
    for (const pid of Object.keys(asksAfterS)) {
      offered[pid] = ofType(drainControl(src, pid), "have").flatMap((h) =>
        h.pieces.flatMap((bit, i) => (bit ? [i] : [])),
      );
    }
    for (const [pid, afterS] of Object.entries(asksAfterS).sort((a, b) => a[1] - b[1])) {
      for (const index of offered[pid]) src.receive(pid, request(seq, index, 1, false), now + afterS);
    }
    if (seq >= 2) for (const pid of Object.keys(offered)) counts[pid] += offered[pid].length;
  }
  // Weights 10 : 10 : 1.67 over 6 chunks of 5 pieces (the Python core's test expects the same).
  assert.deepEqual(counts, { v0: 14, v1: 14, v2: 2 });
});

test("serving: never-uploaded pieces first, then lowest seq, then oldest; at most uploadSlots", async () => {
  const src = await published(range(0, 3));
  const r = relay(10, { ...CONFIG, startBehindChunks: 2 });
  connect(src, "src", r, "r", 10);
  for (const seq of [0, 1, 2]) r.receive("src", have(seq, [true, true, true, true, true]), 10);
  exchange(src, "src", r, "r", 10, 200);
  assert.deepEqual(r.store.completeSeqs(), [0, 1, 2]);
  for (const [pid, seq] of [
    ["x", 2],
    ["y", 0],
    ["z", 1],
    ["w", 0],
  ]) {
    r.addNeighbour(pid, 11);
    r.receive(pid, hello(Role.VIEWER), 11);
    drainControl(r, pid);
    r.receive(pid, request(seq, 0, 0xffff, false), 11);
  }
  assert.deepEqual(r.uploadPeers(), ["y", "w"], "seq 0 first, the older request first");
  assert.equal(r.nextDataMessage("x", 11), null, "seq 2 waits for a slot");
  assert.equal(drainData(r, "y", 11).length, 5);
  // Seq 0 went out once (to y): w's request is a repair now, behind the first forwards of 1, 2.
  assert.deepEqual(r.uploadPeers(), ["z", "x"], "never-uploaded pieces before a lower seq");
  assert.ok(r.takeReady().has("z"), "a freed slot makes the next link ready");
  assert.equal(drainData(r, "z", 11).length, 5);
  assert.deepEqual(r.uploadPeers(), ["x", "w"], "then the lowest seq");
});

test("a viewer that does not upload is no holder: it answers absent, never serves", async () => {
  const src = await published(range(0, 2), 10);
  const quiet = new SwarmPeer({
    role: Role.VIEWER,
    now: 10,
    config: CONFIG,
    upload: false,
    verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
  });
  connect(src, "src", quiet, "q", 10);
  exchange(src, "src", quiet, "q", 10);
  assert.ok(quiet.store.completeSeqs().length >= 1);
  quiet.addNeighbour("v", 10);
  quiet.receive("v", hello(Role.VIEWER), 10);
  drainControl(quiet, "v");
  quiet.receive("v", request(1, 0, 0xffff, true), 10);
  assert.equal(ofType(drainControl(quiet, "v"), "absent").length, 1);
  assert.equal(quiet.nextDataMessage("v", 10), null);
});

const pieceOf = (c, seq, index) =>
  encodeMessage({
    type: "piece",
    seq,
    index,
    count: 5,
    payload: c.data.slice(index * 1000, Math.min(c.data.length, (index + 1) * 1000)),
  });

test("the source hears of every chunk we complete, though it holds them all", async () => {
  const c = await signed(0, 0);
  const v = viewer(0);
  link(v, [["src", Role.SOURCE], ["p", Role.VIEWER], ["w", Role.VIEWER]], 0);
  v.receive("src", have(0, [true, true, true, true, true]), 0);
  v.receive("p", have(0, [true, true, true, true, true]), 0);
  v.receive("p", encodeMessage(c.header), 0.01);
  for (let i = 0; i < 5; i++) v.receive("p", pieceOf(c, 0, i), 0.02);
  assert.deepEqual(kinds(v.popEvents(), "ChunkComplete").length, 1);
  v.handleTimer(0.5); // any coalesced have is due by now
  const complete = (pid) =>
    ofType(drainControl(v, pid), "have").filter((h) => h.seq === 0 && h.pieces.every(Boolean));
  assert.equal(complete("src").length, 1, "the source is told: we are fed by peers");
  assert.equal(complete("w").length, 1);
  assert.equal(complete("p").length, 0, "a peer that holds the chunk is not told");
});

test("the source stops super-seeding a neighbour nobody feeds", async () => {
  const src = source();
  const pids = ["linked", "isolated", "other"];
  for (const pid of pids) {
    src.addNeighbour(pid, 0);
    src.receive(pid, hello(Role.VIEWER), 0);
  }
  let seq = 0;
  let now = 0;
  while (now < DEFAULT_CONFIG.sourceSeedProofS + 2) {
    const c = await signed(seq, now);
    src.publishChunk(c.header, c.data, now);
    for (const pid of ["linked", "other"]) {
      // they complete chunks with pieces from peers (pieces the source never sent them)
      src.receive(pid, have(seq, [true, true, true, true, true]), now + 0.5);
    }
    seq += 1;
    now += 1;
    src.handleTimer(now);
  }
  for (const pid of pids) drainControl(src, pid);
  const c = await signed(seq, now, fill(seq + 100));
  src.publishChunk(c.header, c.data, now);
  const seeded = pids.filter((pid) =>
    ofType(drainControl(src, pid), "have").some((h) => !h.pieces.every(Boolean)),
  );
  assert.deepEqual(seeded, ["linked", "other"]);
});

test("the source seeds a fresh neighbour, and all uploaders when none is linked", async () => {
  const src = source();
  greet(src, ["a", "b"], 0);
  // Long after they joined, with no proof from either: both are seeded (nobody qualifies).
  const c = await signed(0, 10);
  src.publishChunk(c.header, c.data, 10);
  for (const pid of ["a", "b"]) {
    assert.equal(ofType(drainControl(src, pid), "have").length, 1, pid);
  }
  // A newcomer (joined < sourceSeedProofS ago) is linked: it alone gets the first copies.
  src.addNeighbour("new", 10.5);
  src.receive("new", hello(Role.VIEWER), 10.5);
  drainControl(src, "new");
  const c1 = await signed(1, 11);
  src.publishChunk(c1.header, c1.data, 11);
  const haves = (pid) => ofType(drainControl(src, pid), "have").filter((h) => h.seq === 1);
  assert.deepEqual(haves("new").map((h) => h.pieces), [[true, true, true, true, true]]);
  assert.deepEqual(haves("a").concat(haves("b")), []);
});

/**
 * A viewer playing from the source, and a slow neighbour holding chunk 6 that we asked for it and
 * that trickles: one piece in 2 s (the source holds chunk 6 too, and says so unless not
 * sourceTells). Returns the viewer and its playout start.
 */
async function slowHolderOfChunk6({ sourceTells = true } = {}) {
  const src = await published(range(3, 6), 10);
  const v = viewer(10);
  connect(src, "src", v, "v", 10);
  exchange(src, "src", v, "v", 10.1);
  const pb = v.playback;
  assert.ok(pb.playStartS !== null);
  v.addNeighbour("slow", 10.1);
  v.receive("slow", hello(Role.VIEWER), 10.1);
  v.receive("slow", have(6, [true, true, true, true, true]), 10.1);
  const asked = ofType(drainControl(v, "slow"), "request");
  assert.ok(asked.length > 0 && asked[0].seq === 6);
  const c = await signed(6, 10.1);
  src.publishChunk(c.header, c.data, 10.1);
  let m;
  // (the source's haves: it holds chunk 6 too)
  while ((m = src.nextControlMessage("v")) !== null) if (sourceTells) v.receive("src", m, 10.1);
  v.receive("slow", encodeMessage(c.header), 10.2);
  v.receive("slow", pieceOf(c, 6, 0), 12.2);
  assert.ok(v.neighbour("slow").meter.rateBytesPerS > 0);
  drainControl(v, "slow");
  return { v, playStartS: pb.playStartS };
}

test("urgent pieces are taken from a holder too slow for the deadline (no strike)", async () => {
  const { v, playStartS } = await slowHolderOfChunk6();
  // Chunk 6 is due at playStart + 2 s; 1.4 s before, the rest (at ~500 B/s) cannot arrive in
  // time - though the slow peer did make progress (no timeout).
  v.handleTimer(playStartS + 0.6);
  const stats = v.stats();
  assert.equal(stats.timeouts, 0);
  assert.ok(stats.rescues >= 1, `rescues ${stats.rescues}`);
  assert.ok(ofType(drainControl(v, "slow"), "cancel").some((m) => m.seq === 6));
  assert.equal(v.neighbour("slow").strikes, 0);
  assert.equal(v.neighbour("slow").assignments.has(6), false);
});

test("a slow holder keeps urgent pieces when nobody else may be asked (as in Python)", async () => {
  const { v, playStartS } = await slowHolderOfChunk6();
  // The source leaves: the slow neighbour is the only one that uploads.
  v.removeNeighbour("src", 12.2);
  v.handleTimer(playStartS + 0.6);
  assert.equal(v.stats().rescues, 0);
  assert.ok(!ofType(drainControl(v, "slow"), "cancel").some((m) => m.seq === 6));
  assert.ok(v.neighbour("slow").assignments.has(6)); // still asked there: the rest may come
});

test("a slow holder keeps urgent pieces while no other neighbour holds them", async () => {
  // The source stays but has not said it holds chunk 6: cancelled, the pieces would be asked
  // again of the slow neighbour at once, as a last resort.
  const { v, playStartS } = await slowHolderOfChunk6({ sourceTells: false });
  v.handleTimer(playStartS + 0.6);
  assert.equal(v.stats().rescues, 0);
  assert.ok(!ofType(drainControl(v, "slow"), "cancel").some((m) => m.seq === 6));
});

// ---------------------------------------------------------------- adaptive lag (Playback)

const near = (actual, expected, what = "") =>
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what} ${actual} != ${expected}`);

/** A Playback with the adaptive lag of the core's defaults; chunk s is due at playStart + s. */
function adaptive(extra = {}) {
  const pb = new Playback({
    chunkDurationS: 1,
    startBehindChunks: 0,
    joinedS: 0,
    targetLagS: 1,
    lagMarginS: 1,
    lagStepS: 0.5,
    stallStepS: 0.5,
    maxStallS: 2,
    maxLagAddedS: 10,
    ...extra,
  });
  pb.hearOf(0);
  return pb;
}

test("Playback: a close call slows playout down, by at most lagStepS, within maxLagAddedS", () => {
  const pb = adaptive({ maxLagAddedS: 0.8 });
  assert.equal(pb.completed(5, 4.9), 0, "not started: nothing to slow down");
  assert.equal(pb.startIfReady(0, true, 0, 0), true);
  assert.equal(pb.playStartS, 1);
  assert.equal(pb.completed(4, 3), 0, "a margin of lagMarginS is comfortable");
  assert.equal(pb.completed(4, 4.1), 0, "after its deadline: not a close call (a stall)");
  near(pb.completed(4, 3.2), 0.2, "margin 0.8: up to the margin");
  near(pb.completed(5, 4.9), 0.5, "margin 0.1: at most lagStepS");
  near(pb.completed(6, 5.9), 0.1, "never beyond maxLagAddedS");
  assert.equal(pb.completed(7, 6.9), 0);
  near(pb.lagAddedS, 0.8);
  near(pb.playStartS, 1.8);
  near(pb.deadline(3, 3, 0), 4.8, "every later deadline moved");
  assert.equal(pb.stallS, 0, "slowing down is no stall");
  assert.equal(pb.startupS, 1, "startup: when playout began, not where it moved to");
  // Zero steps (Playback's defaults) keep a fixed lag.
  const fixed = new Playback({ chunkDurationS: 1, startBehindChunks: 0, joinedS: 0 });
  fixed.hearOf(0);
  fixed.startIfReady(0, true, 0, 0);
  assert.equal(fixed.completed(1, 0.9), 0);
  assert.equal(fixed.playStartS, 0);
});

test("Playback: a chunk missing at its deadline stalls playout, then plays late", () => {
  const pb = adaptive();
  pb.startIfReady(0, true, 0, 0); // chunk s due at 1 + s
  const held = new Set([0, 1]);
  const due = (now) =>
    pb.due(
      now,
      (s) => s,
      (s) => held.has(s),
    );
  assert.deepEqual(due(2.2), [
    [0, true],
    [1, true],
  ]);
  assert.deepEqual(due(3), [], "chunk 2 is missing: a stall, not a skip");
  assert.equal(pb.stallS, 0.5);
  assert.equal(pb.playStartS, 1.5);
  assert.deepEqual(due(3.4), []);
  held.add(2);
  assert.deepEqual(due(3.5), [[2, true]]);
  assert.deepEqual([pb.played, pb.late, pb.missed], [2, 1, 0]);
  assert.equal(pb.continuity, 2 / 3, "a chunk played late counts against continuity");
  assert.equal(pb.lagAddedS, 0.5);
  // Later chunks keep the longer lag.
  held.add(3);
  assert.deepEqual(due(4.4), []);
  assert.deepEqual(due(4.5), [[3, true]]);
  assert.deepEqual([pb.played, pb.late, pb.missed], [3, 1, 0]);
  assert.equal(pb.continuity, 3 / 4);
  assert.equal(pb.startupS, 1);
});

test("Playback: a chunk that never comes stalls up to maxStallS, then is skipped", () => {
  const pb = adaptive();
  pb.startIfReady(0, true, 0, 0);
  const held = new Set([0]);
  const due = (now) =>
    pb.due(
      now,
      (s) => s,
      (s) => held.has(s),
    );
  assert.deepEqual(due(1), [[0, true]]);
  assert.deepEqual(due(2), []);
  assert.deepEqual(due(2.5), []);
  assert.deepEqual(due(3.9), []);
  assert.equal(pb.stallS, 2, "stalled maxStallS for chunk 1, in stallStepS steps");
  assert.deepEqual(due(4), [[1, false]]);
  assert.deepEqual([pb.played, pb.late, pb.missed], [1, 0, 1]);
  assert.equal(pb.continuity, 1 / 2);
  assert.equal(pb.lagAddedS, 2);
  assert.equal(pb.playStartS, 3);
  // The next missing chunk stalls afresh.
  assert.deepEqual(due(5), []);
  assert.equal(pb.stallS, 2.5);
  // Stalls never push playout back beyond maxLagAddedS: then the chunk is skipped at once.
  const capped = adaptive({ maxLagAddedS: 0.5 });
  capped.startIfReady(0, true, 0, 0);
  assert.deepEqual(
    capped.due(
      1,
      (s) => s,
      () => false,
    ),
    [],
  );
  assert.deepEqual(
    capped.due(
      1.5,
      (s) => s,
      () => false,
    ),
    [[0, false]],
  );
  assert.deepEqual([capped.lagAddedS, capped.stallS, capped.missed], [0.5, 0.5, 1]);
});

// ---------------------------------------------------------------- adaptive lag (core)

test("the core passes the adaptive-lag settings to its Playback", () => {
  const pb = viewer().playback;
  assert.deepEqual(
    [pb.lagMarginS, pb.lagStepS, pb.stallStepS, pb.maxStallS, pb.maxLagAddedS],
    [0.7, 0.5, 0.5, 2.0, 10.0],
  );
  const fixed = viewer(0, { ...CONFIG, stallStepS: 0, lagStepS: 0 }).playback;
  assert.deepEqual([fixed.stallStepS, fixed.lagStepS], [0, 0]);
  const s = viewer().stats();
  assert.deepEqual([s.chunks_late, s.lag_added_s, s.stall_s], [0, 0, 0]);
});

test("a chunk completing close to its deadline slows the core's playout down", async () => {
  const src = await published(range(3, 6), 10);
  const v = viewer(10);
  connect(src, "src", v, "v", 10);
  exchange(src, "src", v, "v", 10.1);
  const pb = v.playback;
  assert.equal(pb.startSeq, 4);
  near(pb.playStartS, 12.5);
  v.popEvents();
  // Chunk 6 (due at 14.5) is released late and completes at 14.4: 0.1 s to spare.
  const c = await signed(6, 14);
  src.publishChunk(c.header, c.data, 14);
  exchange(src, "src", v, "v", 14.4);
  const events = v.popEvents();
  assert.deepEqual(
    kinds(events, "ChunkComplete").map((e) => e.seq),
    [6],
  );
  assert.deepEqual(
    kinds(events, "ChunkPlayed").map((e) => e.seq),
    [4, 5],
  );
  near(v.stats().lag_added_s, DEFAULT_CONFIG.lagStepS);
  near(pb.playStartS, 12.5 + DEFAULT_CONFIG.lagStepS);
  v.handleTimer(14.9);
  assert.deepEqual(kinds(v.popEvents(), "ChunkPlayed"), [], "chunk 6 is due at 15 now");
  v.handleTimer(15);
  const [played] = kinds(v.popEvents(), "ChunkPlayed");
  assert.equal(played.seq, 6);
  near(played.lagS, 1.0);
  const stats = v.stats();
  assert.deepEqual([stats.chunks_played, stats.chunks_late, stats.chunks_missed], [3, 0, 0]);
  assert.equal(stats.continuity, 1);
  assert.equal(stats.stall_s, 0);
});

test("a viewer starts one chunk past the newest a peer holds whole, not at the source's edge", () => {
  const v = viewer(0, START_CONFIG);
  link(v, [["src", Role.SOURCE], ["p", Role.VIEWER]], 0);
  const all = (n) => new Array(n).fill(true);
  v.receive("src", bufferMap(0, all(21)), 0.1); // the source holds 0..20
  assert.equal(v.playback.startSeq, 19, "no peer frontier yet: one behind the newest heard of");
  v.receive("src", have(21, all(5)), 0.15);
  assert.equal(v.playback.startSeq, 19, "what the source holds is no frontier");
  v.receive("p", bufferMap(0, all(13)), 0.2); // p holds 0..12
  assert.equal(v.playout.newestAtPeer, 12);
  // 12 has crossed the swarm already; 13 (heard of: the source holds it) is crossing now.
  assert.deepEqual([v.playback.startSeq, v.playback.nextSeq], [13, 13], "back to the peers");
  v.receive("p", have(15, [true, true, false, true, true]), 0.7);
  assert.equal(v.playout.newestAtPeer, 12, "a partial have is no frontier");
  v.receive("p", have(14, all(5)), 0.8);
  assert.equal(v.playback.startSeq, 13, "settled, and 15 is 2 or less ahead: stay");
  v.receive("p", have(15, all(5)), 0.9);
  assert.deepEqual([v.playback.startSeq, v.playback.nextSeq], [16, 16], "3 ahead: follow");
  assert.equal(v.playout.newestHeard, 21);
});

test("a start chunk half fetched is kept when the frontier runs ahead", async () => {
  const c = await signed(16, 0);
  const v = viewer(0, START_CONFIG);
  link(v, [["src", Role.SOURCE], ["p", Role.VIEWER]], 0);
  const all = (n) => new Array(n).fill(true);
  v.receive("src", bufferMap(0, all(21)), 0.1);
  v.receive("p", bufferMap(0, all(16)), 0.2); // p holds 0..15: start at 16
  assert.equal(v.playback.startSeq, 16);
  v.receive("p", encodeMessage(c.header), 0.5);
  v.receive("p", pieceOf(c, 16, 0), 0.6);
  v.receive("p", have(19, all(5)), 1.1);
  assert.equal(v.playback.startSeq, 16, "we hold a piece of 16: no chase");
});

test("while the start point settles, it follows news of fresher chunks one at a time", () => {
  const v = viewer(0, START_CONFIG);
  link(v, [["p", Role.VIEWER]], 0);
  v.receive("p", bufferMap(5, [true, true, true]), 0.1); // p holds 5..7, nothing newer heard
  assert.equal(v.playback.startSeq, 7, "the newest a peer holds whole: nothing fresher known");
  v.receive("p", have(8, [true, false, false, false, false]), 0.3);
  assert.equal(v.playback.startSeq, 8, "within startSettleS: one past the frontier");
  v.receive("p", have(9, [true, false, false, false, false]), 0.4);
  assert.equal(v.playback.startSeq, 8, "never more than startPastPeersChunks past it");
});

test("once playing, the start point no longer follows the peer frontier", async () => {
  const src = await published(range(3, 6), 10);
  const v = viewer(10);
  connect(src, "src", v, "v", 10);
  exchange(src, "src", v, "v", 10.1);
  const pb = v.playback;
  assert.ok(pb.started);
  v.addNeighbour("p", 10.2);
  v.receive("p", hello(Role.VIEWER), 10.2);
  v.receive("p", bufferMap(3, new Array(8).fill(true)), 10.2); // p holds 3..10
  assert.equal(v.playout.newestAtPeer, 10);
  assert.deepEqual([pb.startSeq, pb.nextSeq], [4, 4]);
});

test("the fetch window grows with the lag added", () => {
  // Everything urgent: the source is asked for whatever in the window no peer holds.
  const v = viewer(0, { ...CONFIG, fetchAheadChunks: 1, urgentS: 100 });
  link(v, [["p", Role.VIEWER], ["src", Role.SOURCE]], 0);
  v.receive("p", bufferMap(0, new Array(6).fill(true)), 0.1); // p holds 0..5
  v.receive("src", bufferMap(0, new Array(21).fill(true)), 0.1); // the source 0..20
  assert.equal(v.playback.startSeq, 4);
  const asked = () =>
    ["p", "src"].flatMap((pid) => ofType(drainControl(v, pid), "request").map((m) => m.seq));
  assert.deepEqual(asked().sort(byNumber), [4, 5]);
  v.playback.lagAddedS = 1.5; // two chunk durations, rounded up
  v.fetching.replan(); // (a lag added replans with the chunk that added it; here it is set by hand)
  v.handleTimer(0.2);
  assert.deepEqual(asked().sort(byNumber), [6, 7]);
});

const byNumber = (a, b) => a - b;

// ---------------------------------------------------------------- re-seeding (source)

test("the source re-seeds only to linked peers that lack the piece", async () => {
  const src = source();
  greet(src, ["a", "b"], 0);
  const c = await signed(0, 10);
  src.publishChunk(c.header, c.data, 10); // long after they joined: pieces to a, b, a, b, a
  const seeded = ["a", "b"].map((pid) => ofType(drainControl(src, pid), "have")[0].pieces);
  assert.deepEqual(seeded, [
    [true, false, true, false, true],
    [false, true, false, true, false],
  ]);
  // a proves it is fed by peers (piece 1, seeded to b, spread to it); b proves nothing.
  src.receive("a", have(0, [false, true, false, false, false]), 10.1);
  src.handleTimer(10 + DEFAULT_CONFIG.sourceAnnounceDelayS);
  const whole = [true, true, true, true, true];
  const haves = (pid, seq) =>
    ofType(drainControl(src, pid), "have")
      .filter((h) => h.seq === seq)
      .map((h) => h.pieces);
  // b's stuck piece 3 goes to a; a's stuck pieces (0, 2, 4) have nowhere to go (b is unlinked).
  assert.deepEqual(haves("a", 0), [[false, false, false, true, false], whole]);
  assert.deepEqual(haves("b", 0), [whole]);
  // Chunk 1 is seeded to a alone (the only linked peer); b then holds the chunk, though we sent
  // it nothing. One holder besides a is not yet "spread", but nobody else could take a second
  // first copy: only the whole-chunk have follows, to a.
  const c1 = await signed(1, 11);
  src.publishChunk(c1.header, c1.data, 11);
  assert.deepEqual(haves("a", 1), [whole]);
  assert.deepEqual(haves("b", 1), []);
  src.receive("b", have(1, whole), 11.1);
  assert.deepEqual([...src.seeder.spread.get(1).values()], [1, 1, 1, 1, 1]);
  src.handleTimer(11 + DEFAULT_CONFIG.sourceAnnounceDelayS);
  assert.deepEqual(haves("a", 1), [whole]);
  assert.deepEqual(haves("b", 1), [], "b holds it already");
});

// ---------------------------------------------------------------- catch-up (Playback and core)

test("Playback: playout starts startMarginS after a start chunk that came late", () => {
  const started = (now, releaseS) => {
    const pb = new Playback({
      chunkDurationS: 1,
      startBehindChunks: 0,
      joinedS: 0,
      targetLagS: 2.5,
      startMarginS: 1,
    });
    pb.hearOf(3);
    assert.equal(pb.startIfReady(now, true, 3, releaseS), true);
    return pb.playStartS;
  };
  near(started(5, 4.8), 7.3, "fresh: targetLagS after its release");
  assert.equal(started(5, 3), 6, "2 s old: not at once, but 1 s from now");
  assert.equal(started(5, 0), 6, "5 s old (a slow swarm): the same");
  assert.equal(started(5, 90), 7.5, "a source clock far ahead: now + targetLagS");
});

test("Playback: a run of early chunks speeds playout up, never below targetLagS", () => {
  const pb = adaptive({ catchUpMarginS: 1.5, catchUpStepS: 0.2, catchUpChunks: 3 });
  assert.equal(pb.startIfReady(0, true, 0, 0), true); // chunk s due at 1 + s: lag 1 (the target)
  assert.equal(pb.startLagS, 1);
  near(pb.completed(4, 3.8), 0.5, "a close call: lag 1 -> 1.5");
  assert.equal(pb.completed(6, 4), 0, "early, 1 in a row");
  assert.equal(pb.completed(7, 5), 0, "2 in a row");
  near(pb.completed(8, 6), -0.2, "3 in a row: 0.2 s closer");
  near(pb.completed(9, 7), -0.2, "and again for every early chunk after");
  near(pb.completed(10, 8), -0.1, "only down to targetLagS");
  assert.equal(pb.completed(11, 9), 0);
  near(pb.startLagS + pb.lagAddedS, pb.targetLagS);
  near(pb.lagAddedS, 0);
  near(pb.playStartS, 1);
  // A chunk between lagMarginS and catchUpMarginS early ends the run; so does a close call.
  near(pb.completed(13, 12.5), 0.5, "a close call: lag 1 -> 1.5");
  assert.equal(pb.completed(14, 12), 0);
  assert.equal(pb.completed(15, 13), 0);
  assert.equal(pb.completed(16, 14.8), 0, "1.2 s early: comfortable, but the run ends");
  assert.equal(pb.completed(17, 15), 0);
  assert.equal(pb.completed(18, 16), 0, "2 in a row after that: not yet");
  near(pb.completed(19, 17), -0.2, "3 in a row");
  near(pb.completed(20, 18), -0.2);
  near(pb.completed(21, 19), -0.1, "down to the target again");
  assert.equal(pb.completed(25, 26), 0, "after its deadline: neither");
  // A start lag above the target (the start chunk was released long ago) is caught up too: the
  // lag added goes below zero.
  const behind = adaptive({ catchUpMarginS: 1.5, catchUpStepS: 0.2, catchUpChunks: 2 });
  behind.startIfReady(10, true, 0, 0); // released at 0, we start at 10: lag 10
  assert.equal(behind.startLagS, 10);
  assert.equal(behind.completed(15, 12), 0);
  near(behind.completed(16, 13), -0.2);
  near(behind.lagAddedS, -0.2);
  near(behind.playStartS, 9.8);
  near(behind.deadline(3, 3, 0), 12.8, "every later deadline moved closer");
  assert.equal(behind.startupS, 10, "startup: when playout began");
  // catchUpChunks 0 (Playback's default) never speeds up.
  const off = adaptive({ catchUpMarginS: 1.5, catchUpStepS: 0.2 });
  off.startIfReady(10, true, 0, 0);
  for (let s = 0; s < 10; s++) assert.equal(off.completed(20 + s, 10 + s), 0);
  assert.equal(off.playStartS, 10);
});

test("the core passes the catch-up settings and speeds up after early chunks", async () => {
  const pb0 = viewer().playback;
  assert.deepEqual(
    [pb0.catchUpMarginS, pb0.catchUpStepS, pb0.catchUpChunks],
    [1.5, 0.2, 4],
  );
  // Chunks 3..5 were released at 5; we join at 10 and fetch the start chunk (4) and the one
  // after it together, so playout starts at once, 5 s behind (no startMarginS to wait out).
  const src = await published(range(3, 6), 5);
  const v = viewer(10);
  connect(src, "src", v, "v", 10);
  exchange(src, "src", v, "v", 10);
  const pb = v.playback;
  assert.equal(pb.startSeq, 4);
  assert.equal(pb.playStartS, 10);
  assert.equal(pb.startLagS, 5);
  const lags = [];
  for (let seq = 6; seq < 12; seq++) {
    // Each chunk arrives 1.8 s before its deadline: early.
    const now = pb.deadline(seq, seq, 0) - 1.8;
    const c = await signed(seq, now);
    src.publishChunk(c.header, c.data, now);
    exchange(src, "src", v, "v", now);
    lags.push(Math.round((pb.startLagS + pb.lagAddedS) * 10) / 10);
  }
  // Chunk 5 completed with 4, 1 s before its deadline (11): not early enough, so the 4th early
  // chunk is 9.
  assert.deepEqual(lags, [5, 5, 5, 4.8, 4.6, 4.4]);
  near(v.stats().lag_added_s, -0.6);
  assert.ok(pb.lagAddedS < 0, "the lag added goes below zero");
});

test("a negative lag added never shrinks the fetch window", () => {
  const v = viewer(0, { ...CONFIG, fetchAheadChunks: 1 });
  link(v, [["p", Role.VIEWER], ["src", Role.SOURCE]], 0);
  v.playback.lagAddedS = -1.5; // caught up 1.5 s
  v.receive("p", bufferMap(0, new Array(6).fill(true)), 0.1); // p holds 0..5
  v.receive("src", bufferMap(0, new Array(21).fill(true)), 0.1);
  assert.equal(v.playback.startSeq, 4);
  const asked = ["p", "src"].flatMap((pid) =>
    ofType(drainControl(v, pid), "request").map((m) => m.seq),
  );
  assert.deepEqual(asked.sort(byNumber), [4, 5]);
});

// ---------------------------------------------------------------- header push

test("the first have of a chunk carries its header to a neighbour showing none of it", async () => {
  const src = await published(range(0, 1));
  const r = relay(10);
  connect(src, "src", r, "r", 10);
  exchange(src, "src", r, "r", 10);
  assert.deepEqual(r.store.completeSeqs(), [0]);
  // Download-only neighbours: r, linked to no other uploader, fetches chunk 1 from the source
  // at once (it would otherwise wait for chunk 1 to turn urgent).
  for (const pid of ["fresh", "told"]) {
    r.addNeighbour(pid, 10);
    r.receive(pid, hello(Role.VIEWER, Capability.PARTIAL), 10);
    drainControl(r, pid);
  }
  // "told" already announced a piece of chunk 0: it holds the header.
  r.receive("told", have(0, [true, false, false, false, false]), 10);
  r.handleTimer(10.5);
  const c = await signed(1, 11);
  src.publishChunk(c.header, c.data, 11);
  exchange(src, "src", r, "r", 11);
  r.handleTimer(11.5);
  const toFresh = drainControl(r, "fresh").filter((m) =>
    ["chunk_header", "have"].includes(m.type),
  );
  assert.deepEqual(
    toFresh.slice(0, 2).map((m) => [m.type, m.seq]),
    [
      ["chunk_header", 1],
      ["have", 1],
    ],
    "the header first, then the have",
  );
  assert.equal(ofType(toFresh, "chunk_header").length, 1, "once per seq");
  assert.ok(toFresh.length > 2, "a later have of seq 1 went without it");
  const toTold = drainControl(r, "told");
  assert.ok(toTold.some((m) => m.type === "chunk_header" && m.seq === 1), "it has not seen 1");
  assert.ok(!toTold.some((m) => m.type === "chunk_header" && m.seq === 0));
  assert.deepEqual([...r.neighbour("fresh").headersSent], [1]);
  // Further haves of seq 1 go without it; a neighbour that announced pieces gets none.
  const fresh = r.neighbour("fresh");
  r.announcer.sendHave(fresh, 1, [true, true, true, true, true]);
  assert.deepEqual(
    drainControl(r, "fresh").map((m) => m.type),
    ["have"],
  );
  r.receive("told", have(0, [true, true, false, false, false]), 12);
  r.announcer.sendHave(r.neighbour("told"), 0, [true, true, true, true, true]);
  assert.deepEqual(
    drainControl(r, "told").map((m) => m.type),
    ["have"],
  );
  // Nothing to push for a chunk we do not hold; pushHeaders false turns it off.
  r.announcer.sendHave(fresh, 7, [true]);
  assert.deepEqual(
    drainControl(r, "fresh").map((m) => m.type),
    ["have"],
  );
  const quiet = relay(10, { ...CONFIG, pushHeaders: false });
  connect(src, "src", quiet, "q", 12);
  exchange(src, "src", quiet, "q", 12);
  assert.ok(quiet.store.get(1) !== null);
  quiet.addNeighbour("late", 12);
  quiet.receive("late", hello(Role.VIEWER), 12);
  drainControl(quiet, "late");
  quiet.announcer.sendHave(quiet.neighbour("late"), 1, [true, true, true, true, true]);
  assert.deepEqual(
    drainControl(quiet, "late").map((m) => m.type),
    ["have"],
  );
});

test("a viewer given the header with the have asks for pieces only", async () => {
  const src = await published(range(0, 1));
  const r = relay(10);
  connect(src, "src", r, "r", 10);
  exchange(src, "src", r, "r", 10);
  // A viewer that uploads nothing: the relay, linked to no other uploader, fetches chunk 1 from
  // the source at once (with a peer linked it would wait for peers, the chunk not urgent yet).
  const v = new SwarmPeer({
    role: Role.VIEWER,
    now: 10.5,
    config: CONFIG,
    rng: seededRandom(5),
    upload: false,
    verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
  });
  assert.ok(r.addNeighbour("v", 10.5) && v.addNeighbour("r", 10.5));
  for (const m of drainRaw(r, "v")) v.receive("r", m, 10.5);
  for (const m of drainRaw(v, "r")) r.receive("v", m, 10.5);
  const c = await signed(1, 11);
  src.publishChunk(c.header, c.data, 11);
  exchange(src, "src", r, "r", 11);
  r.handleTimer(11.5);
  const toViewer = drainRaw(r, "v");
  assert.equal(decodeMessage(toViewer[0]).type, "chunk_header");
  for (const m of toViewer) v.receive("r", m, 11.5);
  assert.ok(v.store.get(1) !== null, "the pushed header is verified and stored");
  const requests = ofType(drainControl(v, "r"), "request").filter((m) => m.seq === 1);
  assert.ok(requests.length > 0);
  assert.ok(requests.every((m) => !m.wantHeader), "no header request round trip");
});

test("the source's super-seed haves carry the header; header pushes are evicted with the chunk", async () => {
  const src = source();
  greet(src, ["a", "b"], 0);
  const c = await signed(0, 0);
  src.publishChunk(c.header, c.data, 0);
  for (const pid of ["a", "b"]) {
    assert.deepEqual(
      drainControl(src, pid).map((m) => m.type),
      ["chunk_header", "have"],
    );
  }
  src.handleTimer(DEFAULT_CONFIG.sourceAnnounceDelayS);
  for (const pid of ["a", "b"]) {
    assert.deepEqual(
      drainControl(src, pid).map((m) => m.type),
      ["have"],
      "the whole-chunk have: the header went already",
    );
  }
  for (let seq = 1; seq <= DEFAULT_CONFIG.sourceKeepChunks; seq++) {
    const next = await signed(seq, seq);
    src.publishChunk(next.header, next.data, seq);
  }
  assert.equal(src.neighbour("a").headersSent.has(0), false);
  assert.equal(src.neighbour("a").headersSent.has(1), true);
});

// ---------------------------------------------------------------- serving priority

test("a piece never uploaded is served before a lower seq already uploaded once (every role)", async () => {
  const src = await published(range(0, 2));
  const r = relay(10, { ...CONFIG, startBehindChunks: 1, uploadSlots: 1 });
  connect(src, "src", r, "r", 10);
  for (const seq of [0, 1]) r.receive("src", have(seq, [true, true, true, true, true]), 10);
  exchange(src, "src", r, "r", 10, 200);
  assert.deepEqual(r.store.completeSeqs(), [0, 1]);
  greet(r, ["a", "b"], 10);
  r.receive("a", request(0, 0, 1, false), 10);
  assert.equal(decodeMessage(drainData(r, "a", 10)[0]).seq, 0); // piece 0/0 uploaded once now
  assert.equal(r.serving.sentOnce.get(0), 1n);
  r.receive("a", request(0, 0, 1, false), 10.1); // a repair of 0/0 (lower seq, older)
  r.receive("b", request(1, 0, 1, false), 10.1); // 1/0: never uploaded
  assert.deepEqual(r.uploadPeers(), ["b"]);
  // Only pieces we hold count: a never-uploaded piece we lack is no first forward.
  assert.deepEqual(r.serving.serveKey({ seq: 0, pieces: [0], order: 0 }), [1, 0, 0]);
  assert.deepEqual(r.serving.serveKey({ seq: 1, pieces: [1], order: 0 }), [0, 1, 0]);
  r.store.get(1).pieces[1] = null;
  assert.deepEqual(r.serving.serveKey({ seq: 1, pieces: [1], order: 0 }), [1, 1, 0]);
});

test("removing a neighbour drops all its upload items", async () => {
  const src = await published(range(0, 3));
  greet(src, ["a", "b"], 10);
  src.receive("a", request(0, 0, 1, false), 10);
  src.receive("a", request(1, 0, 1, false), 10);
  src.receive("b", request(2, 0, 1, false), 10);
  src.receive("a", request(2, 1, 1, false), 10);
  assert.equal(src.serving.uploads.length, 4);
  src.removeNeighbour("a", 10.1);
  assert.deepEqual(
    src.serving.uploads.map((i) => [i.peerId, i.seq]),
    [["b", 2]],
  );
  assert.deepEqual(src.uploadPeers(), ["b"]);
});

test("a neighbour that announced a chunk as we verified its header (a pushed header) is earlier", async () => {
  const c = await signed(5, 0);
  const v = viewer(0);
  v.addNeighbour("q", 0);
  v.receive("q", hello(Role.VIEWER), 0);
  drainControl(v, "q");
  // q pushes chunk 5's header with its first have (it holds no piece yet): same instant.
  v.receive("q", encodeMessage(c.header), 1);
  v.receive("q", have(5, [false, false, false, false, false]), 1);
  assert.equal(v.fetching.headerS.get(5), 1);
  assert.equal(v.neighbour("q").announcedS.get(5), 1);
  // A pushed header replans only if others with room offer the chunk, and an empty have offers
  // nothing (as in Python): q's next have replans.
  assert.deepEqual(ofType(drainControl(v, "q"), "request"), []);
  v.receive("q", have(5, [true, false, false, false, false]), 1.1);
  // Chunk 5 is urgent (playout would start with it): q, receiving it ahead of us, is asked for
  // pieces it does not hold yet too, as far as its room goes (4 pieces).
  const asked = ofType(drainControl(v, "q"), "request").filter((m) => m.seq === 5);
  assert.ok(asked.every((m) => !m.wantHeader));
  assert.equal(
    asked.reduce((n, m) => n + m.count, 0),
    4,
    "q is a holder of every piece: it announced 5 no later than we verified it",
  );
});

test("playout does not stall for a chunk nobody announced (a gap in the stream)", () => {
  const pb = new Playback({
    chunkDurationS: 1,
    startBehindChunks: 0,
    joinedS: 0,
    targetLagS: 2,
    lagMarginS: 1,
    lagStepS: 0.5,
    stallStepS: 0.5,
    maxStallS: 1,
    maxLagAddedS: 3,
  });
  pb.hearOf(0);
  assert.ok(pb.startIfReady(1, true, 0, 0));
  const have = new Set([0, 2]);
  const out = pb.due(3.1, (s) => s, (s) => have.has(s), (s) => s !== 1);
  assert.deepEqual(out, [[0, true], [1, false]]);
  assert.equal(pb.stallS, 0);
  assert.equal(pb.missed, 1);
});

test("the source offers a stuck first copy again and again while the chunk is young", async () => {
  const src = new SwarmPeer({
    role: Role.SOURCE,
    now: 0,
    config: { ...CONFIG, sourceReseedIntervalS: 0.4, sourceReseedWindowS: 2.0 },
  });
  const pids = ["a", "b", "c", "d", "e"];
  greet(src, pids, 0);
  for (const pid of pids) src.receive(pid, have(99, [true]), 0); // linked: fed by peers
  const c = await signed(0, 0);
  src.publishChunk(c.header, c.data, 0);
  for (const pid of pids) drainControl(src, pid);
  const offered = [];
  let when;
  while ((when = src.nextTimer()) !== null && when <= 3) {
    src.handleTimer(when);
    for (const pid of pids) {
      const haves = ofType(drainControl(src, pid), "have");
      // Nobody ever announces piece 0 from elsewhere: it never counts as spreading.
      if (haves.some((h) => h.pieces[0] && !h.pieces.every(Boolean))) offered.push([when, pid]);
    }
  }
  const times = offered.map(([t]) => t);
  assert.ok(Math.abs(times[0] - DEFAULT_CONFIG.sourceAnnounceDelayS) < 1e-9);
  for (let k = 1; k < times.length; k++) assert.ok(Math.abs(times[k] - times[k - 1] - 0.4) < 1e-9);
  assert.ok(times.at(-1) <= 2.0);
  const whom = offered.map(([, pid]) => pid);
  assert.equal(new Set(whom).size, 4, "a new uploader each time; a had the first copy");
  assert.ok(!whom.includes("a"));
});
