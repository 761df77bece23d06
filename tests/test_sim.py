"""The discrete-event network driving many swarm cores: seeded scenarios, figures vs thresholds."""

from __future__ import annotations

import pytest

from streamer.sim import EventQueue, Scenario, run_scenario

AMPLE = (3.0, 3.0)
"""Peer upload at 3x the stream rate: the regime where the current core comes close to targets."""


def test_event_queue_runs_in_time_order_and_ties_in_schedule_order() -> None:
    q = EventQueue()
    seen: list[str] = []
    q.at(2.0, seen.append, "c")
    q.at(1.0, seen.append, "a")
    q.at(1.0, seen.append, "b")
    q.at(5.0, seen.append, "late")
    q.run_until(3.0)
    assert seen == ["a", "b", "c"] and q.now == 3.0


def test_same_seed_same_figures() -> None:
    sc = Scenario(peers=8, duration_s=10, seed=7, peer_upload_ratio=AMPLE)
    a, b = run_scenario(sc).summary(), run_scenario(sc).summary()
    a.pop("wall_s")
    b.pop("wall_s")
    assert a == b


def test_source_upload_stays_bounded_and_peers_carry_the_stream() -> None:
    result = run_scenario(Scenario(peers=20, duration_s=30, seed=1))
    s = result.summary()
    assert s["viewers_started"] == 20
    assert 0.9 <= s["source_upload_ratio"] <= 2.0
    assert s["peer_share"] >= 0.8  # most bytes come from peers, not the source
    # each chunk is downloaded about once per peer (a piece re-asked after a timeout may come twice)
    assert s["duplicate_share"] <= 0.08


def test_twenty_peers_with_ample_upload_play_continuously() -> None:
    s = run_scenario(Scenario(peers=20, duration_s=30, seed=1, peer_upload_ratio=AMPLE)).summary()
    assert s["continuity_mean"] >= 0.9  # the 0.99 target is not reached yet: see the report
    assert s["continuity_min"] >= 0.75
    assert s["startup_s_p50"] <= 3.5
    assert s["lag_s_p95"] <= 3.5
    assert s["source_upload_ratio"] <= 2.0


@pytest.mark.xfail(strict=True, reason="target not reached yet: continuity min ~0.75 at 1.5-2x")
def test_twenty_peers_at_1_5_to_2x_upload_reach_continuity_target() -> None:
    # (the 30 s run of this seed does reach 0.99; the 60 s one does not: not robust yet)
    s = run_scenario(Scenario(peers=20, duration_s=60, seed=1)).summary()
    assert s["continuity_min"] >= 0.99
    assert s["source_upload_ratio"] <= 2.0


def test_lying_peer_is_dropped_by_everyone_it_lies_to_and_only_it() -> None:
    result = run_scenario(
        Scenario(peers=20, duration_s=30, seed=3, liars=1, peer_upload_ratio=AMPLE)
    )
    assert len(result.liars) == 1
    liar = result.liars[0]
    forged = [d for d in result.drops if d[3].startswith("forged")]
    assert forged, "the liar sent forged pieces and nobody noticed"
    assert all(dropped == liar for _t, _by, dropped, _reason in forged)
    assert all(not s["drops"].get("forged") for pid, s in result.peer_stats.items() if pid == liar)
    s = result.summary()
    assert s["viewers_started"] == 19
    assert s["continuity_mean"] >= 0.7  # see the report: the liar still costs too much


def test_lying_peer_does_not_hurt_continuity() -> None:
    result = run_scenario(
        Scenario(peers=20, duration_s=30, seed=3, liars=1, peer_upload_ratio=AMPLE)
    )
    assert result.summary()["continuity_min"] >= 0.95


def test_churn_is_survived() -> None:
    result = run_scenario(
        Scenario(peers=20, duration_s=30, seed=4, leave_share=0.2, peer_upload_ratio=AMPLE)
    )
    assert len(result.left) == 4
    s = result.summary()
    assert s["viewers_counted"] == 16
    assert s["continuity_mean"] >= 0.9
    assert s["continuity_min"] >= 0.8
    for stats in result.viewers.values():
        assert stats["chunks_played"] >= 20  # everyone kept playing to the end


@pytest.mark.slow
def test_two_hundred_peers_run_in_seconds() -> None:
    # Slow since every verified piece is announced to every neighbour (~20 s on 2 shared cores).
    result = run_scenario(Scenario(peers=200, duration_s=20, seed=5, peer_upload_ratio=AMPLE))
    s = result.summary()
    assert s["wall_s"] < 40.0
    assert s["viewers_started"] >= 190
    assert s["source_upload_ratio"] <= 2.0
    assert s["continuity_mean"] >= 0.6  # see the report: large swarms still lose chunks
