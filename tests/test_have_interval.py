"""Haves slow down on a narrow uplink, in the Python core: tests/scenarios/have_interval.json,
which tests/js/have_interval.test.mjs runs on the JS core."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from streamer.protocol import Role
from streamer.swarm import HeaderVerifier, SwarmConfig, SwarmPeer
from tests.test_swarm import PUB

SCENARIO = json.loads((Path(__file__).parent / "scenarios" / "have_interval.json").read_text())


def test_the_have_interval_follows_the_best_recent_upload_rate() -> None:
    core = SwarmPeer(
        role=Role.VIEWER,
        now=0.0,
        config=SwarmConfig(),
        verifier=HeaderVerifier(PUB),
        rng=random.Random(1),
    )
    for i in range(SCENARIO["neighbours"]):
        core.add_neighbour(f"n{i}", 0.0)
    for step in SCENARIO["steps"]:
        core.bytes_uploaded = step["bytes_uploaded"]
        core.handle_timer(step["now_s"])
        assert core.have_interval_s() == pytest.approx(step["have_interval_s"], abs=1e-6), step
