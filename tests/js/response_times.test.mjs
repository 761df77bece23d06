// A neighbour's response time, as the JS core measures it (tests/test_response_times.py checks
// the Python core's meter). The timers measured from it (stuck pieces moved or timed out, a
// silent holder timing out) are shared scenarios: tests/conformance/scenarios/stuck-pieces-*.json,
// pieces-move-only-past-the-holder-s-slow-responses.json
// and request-timeout-asks-someone-else.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ResponseMeter } from "../../web/static/js/neighbours.js";

test("the response meter keeps a low and a high quantile of its recent samples", () => {
  const meter = new ResponseMeter();
  assert.equal(meter.baseS, null);
  assert.equal(meter.slowS, null);
  for (const s of [0.4, 0.3, 0.5]) meter.sample(s);
  assert.deepEqual([meter.baseS, meter.slowS], [0.3, 0.4]);
  for (const s of [0.02, 0.6, 0.5, 0.45, 0.55]) meter.sample(s); // one far too quick
  assert.equal(meter.baseS, 0.3);
  assert.equal(meter.slowS, 0.5); // the upper quartile, not the slowest one (0.6)
  for (let i = 0; i < ResponseMeter.SAMPLES; i++) meter.sample(0.6);
  assert.deepEqual([meter.baseS, meter.slowS], [0.6, 0.6]);
});
