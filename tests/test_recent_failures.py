"""The memory of peers whose link failed: tests/scenarios/recent_failures.json, which the page's
memory runs too (tests/js/recent_failures.test.mjs)."""

from __future__ import annotations

import json
from pathlib import Path

from streamer.node.recent_failures import RecentFailures

SCENARIO = json.loads((Path(__file__).parent / "scenarios" / "recent_failures.json").read_text())


def test_the_memory_follows_the_shared_scenario() -> None:
    failures = RecentFailures(SCENARIO["memory_s"])
    for step in SCENARIO["steps"]:
        if "add" in step:
            failures.add(step["add"], step["now_s"])
        else:
            assert failures.ids(step["now_s"]) == set(step["ids"]), step
