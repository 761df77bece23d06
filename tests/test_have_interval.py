"""Haves slow down on a narrow uplink, in the Python core: tests/scenarios/have_interval.json,
which tests/js/have_interval.test.mjs runs on the JS core."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from streamer.protocol import Role
from streamer.swarm import HeaderVerifier, SwarmConfig, SwarmPeer
from streamer.swarm.announcing import have_interval_for
from streamer.swarm.neighbours import UplinkMeter
from tests.test_swarm import PUB

SCENARIO = json.loads((Path(__file__).parent / "scenarios" / "have_interval.json").read_text())


def test_the_have_interval_follows_the_measured_uplink() -> None:
    meter, config = UplinkMeter(), SwarmConfig()
    for step in SCENARIO["steps"]:
        meter.sample(step["bytes_uploaded"], step["backlogged"], step["now_s"])
        expected = step["capacity_bytes_per_s"]
        if expected is None:
            assert meter.capacity_bytes_per_s is None, step
        else:
            assert meter.capacity_bytes_per_s == pytest.approx(expected, abs=1e-3), step
        interval_s = have_interval_for(config, SCENARIO["neighbours"], meter.capacity_bytes_per_s)
        assert interval_s == pytest.approx(step["have_interval_s"], abs=1e-6), step


def test_a_core_nobody_asked_for_anything_sends_haves_at_the_shortest_interval() -> None:
    core = SwarmPeer(role=Role.VIEWER, now=0.0, verifier=HeaderVerifier(PUB), rng=random.Random(1))
    for i in range(8):
        core.add_neighbour(f"n{i}", 0.0)
    for second in range(1, 5):
        core.bytes_uploaded += 2000  # haves and requests, no upload queue
        core.handle_timer(float(second))
    assert core.have_interval_s() == SwarmConfig().have_interval_s
