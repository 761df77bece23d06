// The page's throughput meter, event by event: tests/scenarios/rate_meter.json, which the
// Python meter runs too (tests/test_rate_meter.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { RateMeter } from "../../web/static/js/neighbours.js";

const { steps } = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "rate_meter.json"), "utf8"),
);

test("the meter follows the shared scenario", () => {
  const meter = new RateMeter();
  for (const step of steps) {
    if (step.event === "busy") meter.busy(step.now_s);
    else if (step.event === "received") meter.received(step.bytes, step.now_s);
    else meter.idle();
    const what = JSON.stringify(step);
    if (step.rate_bytes_per_s === null) assert.equal(meter.rateBytesPerS, null, what);
    else assert.ok(Math.abs(meter.rateBytesPerS - step.rate_bytes_per_s) < 1e-3, what);
  }
});
