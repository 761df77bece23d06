"""First copies by seed response, in the Python core: tests/scenarios/seeding.json, which
tests/js/seeding.test.mjs runs on the JS core, and the rule at work in a source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.protocol import Have, Request, encode_message
from streamer.swarm.seeding import assign_first_copies, seed_weights
from tests.test_swarm import drain_control, greet, publish, source

SCENARIO = json.loads((Path(__file__).parent / "scenarios" / "seeding.json").read_text())


@pytest.mark.parametrize("case", SCENARIO["cases"], ids=lambda case: case["about"])
def test_first_copies_follow_the_seed_responses(case: dict) -> None:
    weights = seed_weights(case["responses_s"], SCENARIO["floor_s"], SCENARIO["prior_s"])
    assert list(weights) == list(case["responses_s"])
    assert weights == pytest.approx(case["weights"], abs=1e-6)
    credit: dict[str, float] = {}
    got = [assign_first_copies(weights, n, credit) for n in case["piece_counts"]]
    assert got == case["first_copies"]


def test_a_source_offers_fewer_first_copies_to_a_neighbour_that_asks_late() -> None:
    src = source()
    greet(src, ["v0", "v1", "v2"], 0.0)
    asks_after_s = {"v0": 0.1, "v1": 0.1, "v2": 0.6}
    counts = dict.fromkeys(asks_after_s, 0)
    for seq in range(8):
        now = 1.0 + seq
        publish(src, seq, bytes([seq]) * 4500, float(seq), 1.0, now)  # 5 pieces
        offered = {}
        for pid in asks_after_s:
            haves = [m for m in drain_control(src, pid) if isinstance(m, Have)]
            offered[pid] = [i for h in haves for i, bit in enumerate(h.pieces) if bit]
        for pid, after_s in sorted(asks_after_s.items(), key=lambda kv: kv[1]):
            for index in offered[pid]:
                src.receive(pid, encode_message(Request(seq, index, 1, False)), now + after_s)
        if seq >= 2:  # once every neighbour was measured
            for pid, pieces in offered.items():
                counts[pid] += len(pieces)
    # Weights 10 : 10 : 1.67 over 6 chunks of 5 pieces (the JS core's test expects the same).
    assert counts == {"v0": 14, "v1": 14, "v2": 2}
