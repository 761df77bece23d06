// A neighbour's response time, as the JS core measures it (tests/test_response_times.py checks
// the Python core's meter). The timers measured from it (stuck pieces moved or timed out, a
// silent holder timing out) are shared scenarios: tests/conformance/scenarios/stuck-pieces-*.json
// and request-timeout-asks-someone-else.json.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ResponseMeter } from "../../web/static/js/neighbours.js";

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
