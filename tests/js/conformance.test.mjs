// The shared hand-written scenarios of tests/conformance/scenarios/ on the JS core: inputs with
// explicit times, expected messages, events and timers. tests/test_conformance.py runs the same
// files on the Python core, and replays simulator traces into both (`make conformance`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { replay } from "../conformance/replay.mjs";

const DIR = join(ROOT, "tests", "conformance", "scenarios");

for (const file of readdirSync(DIR).filter((f) => f.endsWith(".json")).sort()) {
  const scenario = JSON.parse(readFileSync(join(DIR, file), "utf8"));
  test(`conformance scenario ${file}`, () => {
    const { outputs, error } = replay(scenario);
    assert.equal(error, undefined, error);
    scenario.steps.forEach((step, n) => {
      if (!("expect" in step)) return;
      const { expect, ...input } = step;
      assert.deepEqual(outputs[n], expect, `step ${n}: ${JSON.stringify(input)}`);
    });
  });
}
