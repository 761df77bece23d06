// The page's memory of peers whose link failed: tests/scenarios/recent_failures.json, which the
// Python memory runs too (tests/test_recent_failures.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { RecentFailures } from "../../web/static/js/recentfailures.js";

const scenario = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "recent_failures.json"), "utf8"),
);

test("the memory follows the shared scenario", () => {
  const failures = new RecentFailures(scenario.memory_s);
  for (const step of scenario.steps) {
    if ("add" in step) failures.add(step.add, step.now_s);
    else assert.deepEqual([...failures.ids(step.now_s)].sort(), step.ids, JSON.stringify(step));
  }
});
