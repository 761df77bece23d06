"""The discrete-event network driving many swarm cores: seeded scenarios, figures vs thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pytest

from streamer.sim import EventQueue, Scenario, compiled, run_scenario

AMPLE = (3.0, 3.0)
"""Peer upload at 3x the stream rate: the regime where the current core comes close to targets."""
JOIN_STAGGER_S = 0.05
"""These scenarios' relays and viewers join 50 ms apart (20 viewers: all within a second)."""


def assert_pinned(summary: dict[str, Any], **expected: float) -> None:
    """Figures of a seeded run, to the 3 decimals pinned. A run is deterministic (virtual time,
    every draw from the seed, no hash-order dependence: test_same_seed_same_figures and
    test_runs_do_not_depend_on_hash_order), so any move is a change in the core or the model:
    re-pin deliberately, saying why in the commit."""
    moved = {
        name: round(summary[name], 3)
        for name, value in expected.items()
        if summary[name] != pytest.approx(value, abs=5e-4)
    }
    assert not moved, f"figures moved (now): {moved}"


def scenario(**fields: Any) -> Scenario:
    """A Scenario whose peers join JOIN_STAGGER_S apart."""
    sc = Scenario(**fields)
    return replace(sc, join_window_s=JOIN_STAGGER_S * (sc.peers + sc.relays))


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
    sc = scenario(peers=8, duration_s=10, seed=7, peer_upload_ratio=AMPLE)
    a, b = run_scenario(sc).summary(), run_scenario(sc).summary()
    a.pop("wall_s")
    b.pop("wall_s")
    assert a == b


def test_observer_and_tap_see_what_the_cores_do_without_changing_it() -> None:
    from streamer.protocol import MsgType
    from streamer.swarm import ChunkComplete, ChunkPlayed

    sc = scenario(peers=6, duration_s=8, seed=3, peer_upload_ratio=AMPLE)
    events: list[tuple[str, object, float]] = []
    pieces: list[tuple[str, str, float, float]] = []

    def tap(src: str, dst: str, data: bytes, sent_s: float, arrives_s: float) -> None:
        if data[0] == MsgType.PIECE:
            pieces.append((src, dst, sent_s, arrives_s))

    traced = run_scenario(sc, observer=lambda *e: events.append(e), tap=tap)
    played = [e for e in events if isinstance(e[1], ChunkPlayed)]
    completed = {(pid, e.seq) for pid, e, _ in events if isinstance(e, ChunkComplete)}
    assert played and all((pid, e.seq) in completed for pid, e, _ in played)
    assert sum(s["chunks_played"] for s in traced.peer_stats.values()) == len(played)
    assert pieces and all(sc.latency_s <= a - s < 1.0 for _, _, s, a in pieces)
    assert {src for src, *_ in pieces} >= {"source"} and len({dst for _, dst, *_ in pieces}) == 6
    plain, seen = run_scenario(sc).summary(), traced.summary()
    assert {k: v for k, v in plain.items() if k != "wall_s"} == {
        k: v for k, v in seen.items() if k != "wall_s"
    }


def test_result_keeps_the_uplinks_drawn_and_simulate_bounds_with_them() -> None:
    from streamer.bench.simulate import SIMULATE_DEFAULTS, simulate

    sc = scenario(peers=30, relays=1, duration_s=3, download_only_share=0.5, seed=4)
    ratios = run_scenario(sc).upload_ratios
    assert len(ratios) == 31 and ratios["relay0"] == sc.relay_upload_ratio
    viewers = [r for pid, r in ratios.items() if pid.startswith("peer")]
    assert 5 < viewers.count(0.0) < 25  # about half upload nothing
    assert all(r == 0.0 or 1.5 <= r <= 2.0 for r in viewers)
    mix = replace(SIMULATE_DEFAULTS, peers=30, duration_s=3, seed=4, download_only_share=0.5)
    s = simulate(mix)
    drawn = list(run_scenario(mix).upload_ratios.values())
    assert s["fluid_bound_ratio"] == min(2.0, (2.0 + sum(drawn)) / len(drawn))


def test_simulated_peers_share_one_copy_of_each_verified_piece() -> None:
    from streamer.swarm.chunks import PiecePool

    def payload() -> bytes:
        return bytes(bytearray(b"abc"))  # a new object each time, as each decode makes

    pool = PiecePool()
    first = pool.share(3, 0, payload())
    assert pool.share(3, 0, payload()) is first and len(pool) == 1
    pool.share(9, 1, b"xyz")
    pool.evict_below(5)
    assert len(pool) == 1 and pool.share(3, 0, payload()) is not first


def test_source_upload_stays_bounded_and_peers_carry_the_stream() -> None:
    result = run_scenario(scenario(peers=20, duration_s=30, seed=1))
    s = result.summary()
    assert s["viewers_started"] == 20
    # The source sends each chunk ~1.2 times; 94% of the bytes come from peers. A piece moved
    # from a holder that kept it queued, or re-asked after a timeout, may come twice (3%).
    assert_pinned(s, source_upload_ratio=1.235, peer_share=0.938, duplicate_share=0.025)


def test_twenty_peers_with_ample_upload_play_continuously() -> None:
    s = run_scenario(scenario(peers=20, duration_s=30, seed=1, peer_upload_ratio=AMPLE)).summary()
    assert_pinned(
        s,
        continuity_min=1.0,
        startup_s_p50=3.1,
        lag_s_p50=2.5,
        lag_s_p95=2.5,
        source_upload_ratio=1.199,
    )


@pytest.mark.parametrize(
    ("seed", "lag_s_p95", "source_upload_ratio"),
    [(1, 2.916, 1.222), (2, 2.693, 1.222), (3, 2.875, 1.196)],
)
def test_twenty_peers_at_1_5_to_2x_upload_reach_continuity_target(
    runs: Runs, seed: int, lag_s_p95: float, source_upload_ratio: float
) -> None:
    # Tight upload (1.5-2x the stream rate): every seed, every viewer, for a full minute.
    s = runs.summary(f"tight-{seed}")
    assert s["viewers_started"] == 20
    assert_pinned(
        s, continuity_min=1.0, lag_s_p95=lag_s_p95, source_upload_ratio=source_upload_ratio
    )


@pytest.mark.parametrize(("seed", "source_upload_ratio"), [(1, 1.245), (2, 1.274)])
def test_realistic_mix_with_download_only_viewers_reaches_continuity_target(
    runs: Runs, seed: int, source_upload_ratio: float
) -> None:
    s = runs.summary(f"mix-{seed}")
    assert_pinned(s, continuity_min=1.0, source_upload_ratio=source_upload_ratio)


def test_churn_at_tight_upload_keeps_continuity(runs: Runs) -> None:
    s = runs.summary("tight-churn")
    assert s["viewers_counted"] == 16
    assert_pinned(s, continuity_min=1.0, lag_s_p95=3.059, source_upload_ratio=1.282)


def test_runs_do_not_depend_on_hash_order() -> None:
    """Same seed, different PYTHONHASHSEED: same figures (the sim never iterates a set blindly),
    with viewers leaving (with a bye and silently) and chunks abandoned along the way."""
    code = (
        "from streamer.sim import Scenario, run_scenario;"
        "s = run_scenario(Scenario(peers=40, duration_s=15, seed=3, leave_share=0.3,"
        " join_window_s=2.0,"
        " peer_upload_ratio=(0.5, 3.0), download_only_share=0.15, loss_rate=0.01)).summary();"
        "print(s['events'], s['continuity_mean'], s['source_upload_ratio'], s['lag_s_p95'])"
    )
    children = [  # (side by side: the machine's two cores)
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(h)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for h in (1, 2)
    ]
    outs = {child.communicate(timeout=240)[0] for child in children}
    assert [child.returncode for child in children] == [0, 0]
    assert len(outs) == 1, outs


def test_urgent_pieces_leave_a_holder_too_slow_to_meet_the_deadline() -> None:
    """Viewers behind upload-capped relays (0.05x the stream): first copies stuck there are
    re-asked elsewhere when the relay's measured rate cannot meet the deadline."""
    result = run_scenario(
        scenario(peers=4, relays=2, relay_upload_ratio=0.05, duration_s=30, seed=1)
    )
    rescues = sum(s["rescues"] for s in result.peer_stats.values())
    assert rescues == 54
    # Rescued, though late: the relays' first copies cost the viewers some stalls. (Seeds 1-8
    # average continuity min / mean 0.948 / 0.973; 0.937 / 0.967 when a holder was left even
    # with nobody else to ask.)
    assert_pinned(result.summary(), continuity_min=0.917, continuity_mean=0.947)


def test_lying_peer_is_dropped_by_everyone_it_lies_to_and_only_it() -> None:
    result = run_scenario(
        scenario(peers=20, duration_s=30, seed=3, liars=1, peer_upload_ratio=AMPLE)
    )
    assert len(result.liars) == 1
    liar = result.liars[0]
    forged = [d for d in result.drops if d[3].startswith("forged")]
    assert forged, "the liar sent forged pieces and nobody noticed"
    assert all(dropped == liar for _t, _by, dropped, _reason in forged)
    assert all(not s["drops"].get("forged") for pid, s in result.peer_stats.items() if pid == liar)
    assert len(forged) == 19  # each honest viewer caught it once
    s = result.summary()
    assert s["viewers_started"] == 19
    # The liar costs the source extra copies (1.6x the stream instead of ~1.2x), not continuity.
    assert_pinned(s, continuity_min=1.0, source_upload_ratio=1.578)


def test_churn_is_survived() -> None:
    result = run_scenario(
        scenario(peers=20, duration_s=30, seed=4, leave_share=0.2, peer_upload_ratio=AMPLE)
    )
    assert len(result.left) == 4
    s = result.summary()
    assert s["viewers_counted"] == 16
    assert_pinned(s, continuity_min=1.0, lag_s_p95=2.706)
    for stats in result.viewers.values():
        assert stats["chunks_played"] >= 27  # everyone kept playing to the end


@pytest.mark.slow
def test_two_hundred_peers_start_and_play(runs: Runs) -> None:
    s = runs.summary("two-hundred")
    # (How long it takes is a benchmark figure, the machine's business: not checked.)
    assert s["viewers_started"] >= 190
    assert s["source_upload_ratio"] <= 2.0
    assert s["continuity_mean"] >= 0.9


_SUMMARY_IN_CHILD = """
import json, sys
from streamer.sim import Scenario, run_scenario
from streamer.sim.compiled import core_kind
fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[1]).items()}
summary = run_scenario(Scenario(**fields)).summary()
print(json.dumps({"core": core_kind(), "summary": summary}))
"""


@dataclass(frozen=True)
class PooledRun:
    """A scenario whose summary is all its test reads: run in a child process, two at a time."""

    test: str
    """The test that reads it: a run starts only when its test was selected."""
    fields: dict[str, Any]


def staggered(**fields: Any) -> dict[str, Any]:
    """scenario()'s fields, for a child process."""
    sc = scenario(**fields)
    return {**fields, "join_window_s": sc.join_window_s}


_TIGHT = "test_twenty_peers_at_1_5_to_2x_upload_reach_continuity_target"
_MIX = "test_realistic_mix_with_download_only_viewers_reaches_continuity_target"
POOLED_RUNS = {  # (the longest first: the pool finishes sooner)
    "thousand": PooledRun(
        "test_a_thousand_peers_at_tight_upload",
        {"peers": 1000, "duration_s": 20, "seed": 5, "warmup_s": 5, "join_window_s": 10.0},
    ),
    "two-hundred": PooledRun(
        "test_two_hundred_peers_start_and_play",
        staggered(peers=200, duration_s=20, seed=5, peer_upload_ratio=AMPLE),
    ),
    **{
        f"tight-{seed}": PooledRun(_TIGHT, staggered(peers=20, duration_s=60, seed=seed))
        for seed in (1, 2, 3)
    },
    **{
        f"mix-{seed}": PooledRun(
            _MIX,
            staggered(
                peers=20,
                duration_s=60,
                seed=seed,
                download_only_share=0.1,
                peer_upload_ratio=(1.5, 3.0),
            ),
        )
        for seed in (1, 2)
    },
    "tight-churn": PooledRun(
        "test_churn_at_tight_upload_keeps_continuity",
        staggered(peers=20, duration_s=60, seed=1, leave_share=0.2),
    ),
}


class Runs:
    """The pooled runs of the selected tests, started together (the machine's two cores both
    simulate: about half the wall time of running them one by one)."""

    def __init__(self, pool: ThreadPoolExecutor, selected: set[str]) -> None:
        build = compiled.ensure_build()  # (once, before the children: they share it)
        self._build_path = build.path
        self._futures: dict[str, Future[dict[str, Any]]] = {
            name: pool.submit(self._run, run.fields)
            for name, run in POOLED_RUNS.items()
            if run.test in selected
        }

    def summary(self, name: str) -> dict[str, Any]:
        return self._futures[name].result()

    def _run(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A scenario's summary from a child process: on the mypyc-compiled core when it can be
        built (the same events ~3x faster; test_simulate_cli.py checks both cores give the
        same figures), else on the pure-Python one."""
        env = None if self._build_path is None else compiled.child_env(self._build_path)
        done = subprocess.run(
            [sys.executable, "-c", _SUMMARY_IN_CHILD, json.dumps(fields)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        result = json.loads(done.stdout)
        assert result["core"] == ("python" if env is None else "mypyc"), result["core"]
        summary: dict[str, Any] = result["summary"]
        return summary


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest) -> Iterator[Runs]:
    selected = {getattr(item, "originalname", item.name) for item in request.session.items}
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield Runs(pool, selected)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_thousand_peers_at_tight_upload(runs: Runs) -> None:
    """1,000 viewers at 1.5-2x joining a running stream within 10 s (a flash crowd after a 5 s
    warm-up), 20 s of virtual time: ~50 s of wall time on the compiled core (plus ~30 s to build
    it once per source version), ~2.5 min on pure Python, on 2 shared cores."""
    s = runs.summary("thousand")
    assert s["viewers_started"] >= 990
    assert s["source_upload_ratio"] <= 2.0
    # Not the 0.99 target yet (docs/BENCHMARKS.md, Simulation): a flash crowd of 1,000 on a
    # 5 s old stream stalls while the lag adapts. (Wall time is a benchmark figure, not checked.)
    assert s["continuity_mean"] >= 0.75


@pytest.mark.slow
def test_with_the_servers_down_survivors_replace_neighbours_through_peer_exchange() -> None:
    """The simulator's counterpart of benchmarks/peer_exchange.py: no server answers from 15 s
    on while 30% of the viewers leave; offers and answers relayed by the cores (send_signal ->
    PeerSignal) open new links, so the survivors stay better linked than without exchange."""
    from streamer.swarm import SwarmConfig

    def run(exchange_interval_s: float) -> dict[str, Any]:
        config = replace(SwarmConfig(), exchange_interval_s=exchange_interval_s)
        sc = Scenario(
            peers=30,
            duration_s=40,
            leave_share=0.3,
            tracker_down_s=(15.0, 40.0),
            seed=3,
            config=config,
        )
        return run_scenario(sc).summary()

    with_exchange, without = run(5.0), run(0.0)
    assert with_exchange["links_opened_via_exchange"] > 0
    assert without["links_opened_via_exchange"] == 0
    assert with_exchange["neighbours_min"] >= 3
    assert with_exchange["neighbours_min"] > without["neighbours_min"]
    assert with_exchange["continuity_min"] >= 0.99
