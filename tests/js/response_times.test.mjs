// Timers measured from each neighbour's response time, in the JS core: the scenarios of
// tests/scenarios/response_times.json, which tests/test_response_times.py runs on the Python core.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { makeKeys, signChunk, syncVerifier } from "./swarmnet.mjs";
import { SwarmPeer, Role, seededRandom } from "../../web/static/js/swarm.js";
import { ResponseMeter } from "../../web/static/js/neighbours.js";
import { Capability, PROTOCOL_VERSION, decodeMessage, encodeMessage } from "../../web/static/js/wire.js";

const SCENARIOS = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "response_times.json"), "utf8"),
);
const camel = (name) => name.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const CONFIG = Object.fromEntries(
  Object.entries(SCENARIOS.config).map(([key, value]) => [camel(key), value]),
);
const keys = await makeKeys();
const DATA = new Uint8Array(4500).fill(9);
const HEADER = await signChunk(keys.privateKey, 9, DATA, { startS: 9, releaseS: 10, pieceSize: 1000 });

const hello = () =>
  encodeMessage({
    type: "hello",
    version: PROTOCOL_VERSION,
    role: Role.VIEWER,
    capabilities: Capability.UPLOAD | Capability.PARTIAL,
  });
const have = (seq, pieces) => encodeMessage({ type: "have", seq, pieces });

function viewer(now) {
  return new SwarmPeer({
    role: Role.VIEWER,
    now,
    config: CONFIG,
    rng: seededRandom(5),
    verifyHeaderSync: syncVerifier(keys.publicKeyRaw),
  });
}

function drainControl(core, pid) {
  const out = [];
  let m;
  while ((m = core.nextControlMessage(pid)) !== null) out.push(decodeMessage(m));
  return out;
}

const ofType = (msgs, type) => msgs.filter((m) => m.type === type);

/**
 * Seconds from the request until the slow holder's other pieces are asked elsewhere, and the
 * viewer's stats then.
 */
function askedElsewhere(firstPieceAfterS) {
  const v = viewer(10);
  for (const pid of ["a", "b"]) {
    v.addNeighbour(pid, 10);
    v.receive(pid, hello(), 10);
  }
  v.receive("a", encodeMessage(HEADER), 10);
  v.receive("a", have(9, [true, true, true, true, true]), 10);
  drainControl(v, "b");
  v.receive("b", have(9, [true, true, true, true, true]), 10);
  const slow = ofType(drainControl(v, "a"), "request").length > 0 ? "a" : "b";
  const other = slow === "a" ? "b" : "a";
  drainControl(v, slow);
  const first = Math.min(...v.neighbour(slow).assignments.get(9).pieces);
  const payload = DATA.slice(first * 1000, (first + 1) * 1000);
  v.receive(slow, encodeMessage({ type: "piece", seq: 9, index: first, count: 5, payload }), 10 + firstPieceAfterS);
  drainControl(v, other);
  for (let i = 0; i < 100; i++) {
    const when = v.nextTimer();
    assert.notEqual(when, null);
    v.handleTimer(when);
    if (ofType(drainControl(v, other), "request").length > 0) {
      assert.ok(ofType(drainControl(v, slow), "cancel").length > 0);
      return { afterS: when - 10, stats: v.stats() };
    }
  }
  throw new Error("the pieces were never asked elsewhere");
}

for (const c of SCENARIOS.stuck) {
  test(`stuck pieces go elsewhere by the holder's response time: ${c.name}`, () => {
    const { afterS, stats } = askedElsewhere(c.first_piece_after_s);
    assert.ok(Math.abs(afterS - c.asked_elsewhere_after_s) < 1e-6, `after ${afterS} s`);
    assert.deepEqual([stats.moved, stats.timeouts], c.moved ? [4, 0] : [0, 1]);
  });
}

test("a silent holder times out after the initial response time", () => {
  const v = viewer(0);
  v.addNeighbour("mute", 0);
  v.receive("mute", hello(), 0);
  v.receive("mute", encodeMessage({ type: "buffer_map", baseSeq: 3, bits: [true, true] }), 0);
  assert.ok(v.neighbour("mute").assignments.size > 0);
  let timedOutS = null;
  for (let i = 0; i < 100 && timedOutS === null; i++) {
    const when = v.nextTimer();
    v.handleTimer(when);
    if (v.stats().timeouts > 0) timedOutS = when;
  }
  assert.ok(Math.abs(timedOutS - SCENARIOS.silent.timed_out_after_s) < 1e-6, `at ${timedOutS}`);
});

test("the response meter keeps a low quantile of its recent samples", () => {
  const meter = new ResponseMeter();
  assert.equal(meter.baseS, null);
  for (const s of [0.4, 0.3, 0.5]) meter.sample(s);
  assert.equal(meter.baseS, 0.3);
  for (const s of [0.02, 0.6, 0.5, 0.45, 0.55]) meter.sample(s); // one far too quick
  assert.equal(meter.baseS, 0.3);
  for (let i = 0; i < ResponseMeter.SAMPLES; i++) meter.sample(0.6);
  assert.equal(meter.baseS, 0.6);
});
