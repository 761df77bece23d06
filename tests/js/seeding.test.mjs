// First copies by seed response, in the JS core: tests/scenarios/seeding.json, which
// tests/test_seeding.py runs on the Python core.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { assignFirstCopies, seedWeights } from "../../web/static/js/seeding.js";

const SCENARIO = JSON.parse(readFileSync(join(ROOT, "tests", "scenarios", "seeding.json"), "utf8"));

for (const c of SCENARIO.cases) {
  test(`first copies follow the seed responses: ${c.about}`, () => {
    const weights = seedWeights(new Map(Object.entries(c.responses_s)), SCENARIO.floor_s, SCENARIO.prior_s);
    assert.deepEqual([...weights.keys()], Object.keys(c.responses_s));
    for (const [pid, w] of weights) assert.ok(Math.abs(w - c.weights[pid]) < 1e-6, `${pid}: ${w}`);
    const credit = new Map();
    assert.deepEqual(
      c.piece_counts.map((n) => assignFirstCopies(weights, n, credit)),
      c.first_copies,
    );
  });
}
