"""When playout begins: tests/scenarios/playback_start.json, which the page's playback runs too
(tests/js/playback_start.test.mjs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamer.swarm.playback import Playback

SCENARIO = Path(__file__).parent / "scenarios" / "playback_start.json"
LOADED = json.loads(SCENARIO.read_text())
CONFIG, SCENARIOS = LOADED["config"], LOADED["scenarios"]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[sc["name"] for sc in SCENARIOS])
def test_playout_begins_as_the_shared_scenario_says(sc: dict[str, Any]) -> None:
    pb = Playback(
        chunk_duration_s=1.0,
        start_behind_chunks=0,
        joined_s=0.0,
        target_lag_s=CONFIG["target_lag_s"],
        start_margin_s=CONFIG["start_margin_s"],
        start_sooner_min_lag_s=CONFIG["start_sooner_min_lag_s"],
    )
    pb.hear_of(3)
    assert pb.start_if_ready(sc["complete_s"], True, media_start_s=3.0, release_s=sc["release_s"])
    if sc["next_complete_s"] is not None:
        pb.start_sooner(max(sc["complete_s"], sc["next_complete_s"]))
    assert pb.play_start_s == pytest.approx(sc["play_start_s"])
    assert pb.startup_s == pytest.approx(sc["play_start_s"])
    assert pb.start_lag_s == pytest.approx(sc["play_start_s"] - sc["release_s"])
