// Haves slow down on a narrow uplink, in the JS core: tests/scenarios/have_interval.json, which
// tests/test_have_interval.py runs on the Python core.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { SwarmPeer, Role, seededRandom } from "../../web/static/js/swarm.js";

const SCENARIO = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "have_interval.json"), "utf8"),
);

test("the have interval follows the best recent upload rate", () => {
  const core = new SwarmPeer({
    role: Role.VIEWER,
    now: 0,
    rng: seededRandom(1),
    verifyHeaderSync: () => true,
  });
  for (let i = 0; i < SCENARIO.neighbours; i++) core.addNeighbour(`n${i}`, 0);
  for (const step of SCENARIO.steps) {
    core.bytesUploaded = step.bytes_uploaded;
    core.handleTimer(step.now_s);
    const got = core.haveIntervalS();
    assert.ok(Math.abs(got - step.have_interval_s) < 1e-6, `${JSON.stringify(step)}: ${got}`);
  }
});
