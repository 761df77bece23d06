// The page's uplink gate, step by step: tests/scenarios/uplink_gate.json, which the Python gate
// runs too (tests/test_uplink_gate.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers.mjs";
import { UplinkGate } from "../../web/static/js/uplinkgate.js";

const { steps } = JSON.parse(
  readFileSync(join(ROOT, "tests", "scenarios", "uplink_gate.json"), "utf8"),
);

test("the gate follows the shared scenario", () => {
  const gate = new UplinkGate();
  for (const step of steps) {
    gate.observe(step.now_s, step.buffered_bytes, step.sent_bytes);
    const what = JSON.stringify(step);
    if (step.drain_bytes_per_s === null) assert.equal(gate.drainBytesPerS, null, what);
    else assert.ok(Math.abs(gate.drainBytesPerS - step.drain_bytes_per_s) < 1e-3, what);
    assert.equal(gate.windowBytes, step.window_bytes, what);
    assert.equal(gate.hasRoom(16384), step.room_at_16_kib, what);
  }
});

test("the window holds one piece message at least and a megabyte at most", () => {
  const gate = new UplinkGate();
  gate.observe(0, 1, 0);
  gate.observe(1, 1, 10);
  assert.equal(gate.windowBytes, gate.config.minWindowBytes);
  gate.observe(2, 1, 1e9);
  assert.equal(gate.windowBytes, gate.config.maxWindowBytes);
});
