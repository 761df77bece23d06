"""A neighbour's response time, as the Python core measures it (tests/js/response_times.test.mjs
checks the JS core's meter). The timers measured from it (stuck pieces moved or timed out, a
silent holder timing out) are shared scenarios: tests/conformance/scenarios/stuck-pieces-*.json,
pieces-move-only-past-the-holder-s-slow-responses.json and request-timeout-asks-someone-else.json.
"""

from __future__ import annotations

from streamer.swarm.neighbours import ResponseMeter


def test_response_meter_keeps_a_low_and_a_high_quantile_of_its_recent_samples() -> None:
    meter = ResponseMeter()
    assert meter.base_s is None and meter.slow_s is None
    for sample_s in (0.4, 0.3, 0.5):
        meter.sample(sample_s)
    assert (meter.base_s, meter.slow_s) == (0.3, 0.4)
    for sample_s in (0.02, 0.6, 0.5, 0.45, 0.55):
        meter.sample(sample_s)  # one answer far too quick (a piece already on its way)
    assert meter.base_s == 0.3
    assert meter.slow_s == 0.5  # the upper quartile, not the slowest one (0.6)
    for _ in range(ResponseMeter.SAMPLES):
        meter.sample(0.6)  # the queue grew: the old short samples age out
    assert (meter.base_s, meter.slow_s) == (0.6, 0.6)
