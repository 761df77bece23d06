"""A neighbour's throughput meter, event by event: tests/scenarios/rate_meter.json, which the
page's meter runs too (tests/js/rate_meter.test.mjs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.swarm.neighbours import RateMeter

STEPS = json.loads((Path(__file__).parent / "scenarios" / "rate_meter.json").read_text())["steps"]


def test_the_meter_follows_the_shared_scenario() -> None:
    meter = RateMeter()
    for step in STEPS:
        if step["event"] == "busy":
            meter.busy(step["now_s"])
        elif step["event"] == "received":
            meter.received(step["bytes"], step["now_s"])
        else:
            meter.idle()
        expected = step["rate_bytes_per_s"]
        if expected is None:
            assert meter.rate_bytes_per_s is None, step
        else:
            assert meter.rate_bytes_per_s == pytest.approx(expected, abs=1e-3), step


def test_one_piece_per_round_trip_still_moves_the_rate() -> None:
    """A first sample of 8 KiB in a second (a retransmission timeout), then one piece at a time
    every 0.19 s round trip: the rate climbs to what that round trip gives."""
    meter = RateMeter()
    meter.busy(0.0)
    meter.received(8192, 1.0)
    meter.idle()
    assert meter.rate_bytes_per_s == pytest.approx(8192.0)
    now = 1.0
    for _ in range(40):
        now += 0.05
        meter.busy(now)
        now += 0.19
        meter.received(8192, now)
        meter.idle()
    assert meter.rate_bytes_per_s == pytest.approx(8192 / 0.19, rel=0.01)
