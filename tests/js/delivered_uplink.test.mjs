// What our uplink delivers under work, call by call: tests/scenarios/delivered_uplink.json, which
// the Python meter runs too (tests/test_delivered_uplink.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { DeliveredUplinkMeter } from "../../web/static/js/neighbours.js";

const { steps } = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "delivered_uplink.json"), "utf8"),
);

test("the meter follows the shared scenario", () => {
  const meter = new DeliveredUplinkMeter();
  for (const step of steps) {
    meter.sample(step.delivered_bytes, step.pressed, step.now_s);
    const what = JSON.stringify(step);
    if (step.best_bytes_per_s === null) assert.equal(meter.bestBytesPerS, null, what);
    else assert.ok(Math.abs(meter.bestBytesPerS - step.best_bytes_per_s) < 1e-6, what);
  }
});
