"""The uplink gate, step by step: tests/scenarios/uplink_gate.json, which the page's gate runs
too (tests/js/uplink_gate.test.mjs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.node.uplink_gate import (
    INITIAL_FLIGHT_BYTES,
    MIN_FLIGHT_BYTES,
    UplinkGate,
    flight_window_bytes,
)

STEPS = json.loads((Path(__file__).parent / "scenarios" / "uplink_gate.json").read_text())["steps"]


def test_the_gate_follows_the_shared_scenario() -> None:
    gate = UplinkGate()
    for step in STEPS:
        gate.observe(step["now_s"], step["buffered_bytes"], step["sent_bytes"])
        expected = step["drain_bytes_per_s"]
        if expected is None:
            assert gate.drain_bytes_per_s is None, step
        else:
            assert gate.drain_bytes_per_s == pytest.approx(expected, abs=1e-3), step
        assert gate.window_bytes == step["window_bytes"], step
        assert gate.has_room(16384) is step["room_at_16_kib"], step


def test_the_window_holds_one_piece_message_at_least_and_a_megabyte_at_most() -> None:
    gate = UplinkGate()
    gate.observe(0.0, 1, 0)
    gate.observe(1.0, 1, 10)  # 10 bytes/s, never dry
    assert gate.window_bytes == gate.config.min_window_bytes
    assert gate.has_room(8 * 1024 + 30)
    gate.observe(2.0, 1, 10**9)  # a gigabyte a second
    assert gate.window_bytes == gate.config.max_window_bytes


def test_the_flight_window_is_0_4_s_of_the_delivered_rate_two_pieces_at_least() -> None:
    assert flight_window_bytes(None) == INITIAL_FLIGHT_BYTES  # nothing delivered under demand yet
    assert flight_window_bytes(1_000_000 / 8) == 50_000  # 1 Mbit/s: 0.4 s of it
    assert flight_window_bytes(100) == MIN_FLIGHT_BYTES  # a trickle still takes two pieces
    assert MIN_FLIGHT_BYTES >= 2 * (8 * 1024 + 9)
