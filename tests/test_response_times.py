"""Timers measured from each neighbour's response time, in the Python core: the scenarios of
tests/scenarios/response_times.json, which tests/js/response_times.test.mjs runs on the JS core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamer.protocol import BufferMap, Cancel, Piece, Request, Role, encode_message
from streamer.swarm import SwarmConfig
from streamer.swarm.neighbours import ResponseMeter
from tests.test_swarm import drain_control, hello, two_holders_of_chunk_9, viewer

SCENARIOS = json.loads((Path(__file__).parent / "scenarios" / "response_times.json").read_text())
CONFIG = SwarmConfig(**SCENARIOS["config"])


def asked_elsewhere(first_piece_after_s: float) -> tuple[float, dict[str, object]]:
    """Seconds from the request until the slow holder's other pieces are asked elsewhere, and
    the viewer's stats then."""
    v = viewer(now=10.0, config=CONFIG)
    slow, other, holder = two_holders_of_chunk_9(v, 10.0)
    chunk = holder.store.get(9)
    nb = v.neighbour(slow)
    assert chunk is not None and nb is not None
    first = min(nb.assignments[9].pieces)
    payload = chunk.pieces[first]
    assert payload is not None
    v.receive(slow, encode_message(Piece(9, first, 5, payload)), 10.0 + first_piece_after_s)
    drain_control(v, other)
    for _ in range(100):
        when = v.next_timer()
        assert when is not None
        v.handle_timer(when)
        if [m for m in drain_control(v, other) if isinstance(m, Request)]:
            assert [m for m in drain_control(v, slow) if isinstance(m, Cancel)]
            return when - 10.0, v.stats()
    raise AssertionError("the pieces were never asked elsewhere")


@pytest.mark.parametrize("case", SCENARIOS["stuck"], ids=lambda c: c["name"])
def test_stuck_pieces_go_elsewhere_by_the_holders_response_time(case: dict[str, Any]) -> None:
    after_s, stats = asked_elsewhere(case["first_piece_after_s"])
    assert after_s == pytest.approx(case["asked_elsewhere_after_s"], abs=1e-6)
    if case["moved"]:
        assert stats["moved"] == 4 and stats["timeouts"] == 0
    else:
        assert stats["moved"] == 0 and stats["timeouts"] == 1


def test_a_silent_holder_times_out_after_the_initial_response_time() -> None:
    v = viewer(config=CONFIG)
    v.add_neighbour("mute", 0.0)
    v.receive("mute", hello(Role.VIEWER), 0.0)
    v.receive("mute", encode_message(BufferMap(3, (True, True))), 0.0)
    assert v.neighbour("mute").assignments  # type: ignore[union-attr]
    timed_out_s = None
    for _ in range(100):
        when = v.next_timer()
        assert when is not None
        v.handle_timer(when)
        if v.stats()["timeouts"]:
            timed_out_s = when
            break
    assert timed_out_s == pytest.approx(SCENARIOS["silent"]["timed_out_after_s"])


def test_response_meter_keeps_a_low_quantile_of_its_recent_samples() -> None:
    meter = ResponseMeter()
    assert meter.base_s is None
    for sample_s in (0.4, 0.3, 0.5):
        meter.sample(sample_s)
    assert meter.base_s == 0.3
    for sample_s in (0.02, 0.6, 0.5, 0.45, 0.55):
        meter.sample(sample_s)  # one answer far too quick (a piece already on its way)
    assert meter.base_s == 0.3
    for _ in range(ResponseMeter.SAMPLES):
        meter.sample(0.6)  # the queue grew: the old short samples age out
    assert meter.base_s == 0.6
