"""What our uplink delivers under work, call by call: tests/scenarios/delivered_uplink.json,
which the page's meter runs too (tests/js/delivered_uplink.test.mjs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.swarm.neighbours import DeliveredUplinkMeter

SCENARIO = Path(__file__).parent / "scenarios" / "delivered_uplink.json"
STEPS = json.loads(SCENARIO.read_text())["steps"]


def test_the_meter_follows_the_shared_scenario() -> None:
    meter = DeliveredUplinkMeter()
    for step in STEPS:
        meter.sample(step["delivered_bytes"], step["pressed"], step["now_s"])
        expected = step["best_bytes_per_s"]
        if expected is None:
            assert meter.best_bytes_per_s is None, step
        else:
            assert meter.best_bytes_per_s == pytest.approx(expected, abs=1e-6), step
