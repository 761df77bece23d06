// Haves slow down on a narrow uplink, in the JS core: tests/scenarios/have_interval.json, which
// tests/test_have_interval.py runs on the Python core.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { DEFAULT_CONFIG, SwarmPeer, Role, haveIntervalFor, seededRandom } from "../../web/static/js/swarm.js";
import { UplinkMeter } from "../../web/static/js/neighbours.js";

const SCENARIO = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "have_interval.json"), "utf8"),
);

test("the have interval follows the measured uplink", () => {
  const meter = new UplinkMeter();
  for (const step of SCENARIO.steps) {
    meter.sample(step.bytes_uploaded, step.backlogged, step.now_s);
    const what = JSON.stringify(step);
    if (step.capacity_bytes_per_s === null) assert.equal(meter.capacityBytesPerS, null, what);
    else assert.ok(Math.abs(meter.capacityBytesPerS - step.capacity_bytes_per_s) < 1e-3, what);
    const intervalS = haveIntervalFor(DEFAULT_CONFIG, SCENARIO.neighbours, meter.capacityBytesPerS);
    assert.ok(Math.abs(intervalS - step.have_interval_s) < 1e-6, `${what}: ${intervalS}`);
  }
});

test("a core nobody asked for anything sends haves at the shortest interval", () => {
  const core = new SwarmPeer({ role: Role.VIEWER, now: 0, rng: seededRandom(1), verifyHeaderSync: () => true });
  for (let i = 0; i < 8; i++) core.addNeighbour(`n${i}`, 0);
  for (let second = 1; second < 5; second++) {
    core.bytesUploaded += 2000;
    core.handleTimer(second);
  }
  assert.equal(core.haveIntervalS(), DEFAULT_CONFIG.haveIntervalS);
});
