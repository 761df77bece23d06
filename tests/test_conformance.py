"""One behavioural truth for the two swarm cores (streamer/swarm, web/static/js/swarm.js).

Differential test: simulator runs with churn, loss and lying peers record every input each core
got and every output it gave (tests/conformance/traces.py); the same inputs then go into fresh
Python and JS cores (tests/conformance/replay.mjs), which must give the same message bytes,
events, timers and figures at every step. Both cores draw their random tie-breaks from the same
generator (Mulberry32 / seededRandom) with the trace's seed, so a behaviour changed in one
language only shows up as the first diverging step. The traces are made at test time from fixed
seeds (a second each), so they never go stale.

Hand-written scenarios in the same format (tests/conformance/scenarios/) run here and in
tests/js/conformance.test.mjs. `make conformance` runs both.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conformance.traces import TraceRun, first_divergence, record, replay
from required_tools import required_program

from streamer.sim.scenario import Scenario
from streamer.swarm import SwarmConfig

ROOT = Path(__file__).resolve().parent.parent
REPLAY_JS = ROOT / "tests" / "conformance" / "replay.mjs"
SCENARIOS = sorted((ROOT / "tests" / "conformance" / "scenarios").glob("*.json"))

# Small, short swarms (a 240 kbit/s stream: 4 pieces a chunk) that still see every path: joins,
# leaves with and without a bye, retransmissions, forged pieces and headers, relays, peers that
# upload nothing and uplinks too narrow for the demand (timeouts, rescues, moved pieces).
SMALL = Scenario(peers=8, duration_s=12.0, stream_rate_bps=240_000)
RUNS = [
    TraceRun("churn", dataclasses.replace(SMALL, leave_share=0.5, seed=3)),
    TraceRun("loss", dataclasses.replace(SMALL, loss_rate=0.08, seed=5)),
    TraceRun("liars", dataclasses.replace(SMALL, liars=2, loss_rate=0.02, seed=7)),
    TraceRun("forged-headers", dataclasses.replace(SMALL, liars=1, liar_mode="header", seed=9)),
    TraceRun(
        "relay-narrow",
        dataclasses.replace(
            SMALL,
            relays=1,
            download_only_share=0.3,
            peer_upload_ratio=(0.6, 1.2),
            source_upload_ratio=1.5,
            leave_share=0.3,
            seed=11,
        ),
    ),
    TraceRun(
        "long-gop",
        dataclasses.replace(
            SMALL,
            peers=6,
            chunk_duration_s=2.0,
            duration_s=16.0,
            loss_rate=0.05,
            liars=1,
            leave_share=0.3,
            seed=13,
            config=SwarmConfig(piece_size_bytes=4096, have_interval_s=0.1),
        ),
    ),
]


def node_path() -> str:
    return required_program("node", "REQUIRE_NODE", "Node 20+: Debian nodejs; `make browser`")


def replay_js(traces: dict[str, dict[str, Any]], workdir: Path) -> dict[str, dict[str, Any]]:
    """Every trace into a fresh JS core (one node process): name -> {outputs[, error]}."""
    files = {}
    for n, (name, trace) in enumerate(traces.items()):
        path = workdir / f"trace{n}.json"
        path.write_text(json.dumps(trace))
        files[str(path)] = name
    proc = subprocess.run(
        [node_path(), str(REPLAY_JS), *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = {}
    for line in proc.stdout.splitlines():
        result = json.loads(line)
        results[files[result.pop("file")]] = result
    return results


def divergence(trace: dict[str, Any], result: dict[str, Any]) -> str | None:
    outputs = result["outputs"]
    if "error" in result:
        return f"the JS core threw at step {len(outputs)}: {result['error'][:2000]}"
    return first_divergence(trace, outputs)


@pytest.fixture(scope="module")
def recorded() -> dict[str, dict[str, Any]]:
    traces: dict[str, dict[str, Any]] = {}
    for run in RUNS:
        traces.update(record(run))
    return traces


@pytest.fixture(scope="module")
def js_results(
    recorded: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    return replay_js(recorded, tmp_path_factory.mktemp("traces"))


def test_enough_traces_of_every_role(recorded: dict[str, dict[str, Any]]) -> None:
    assert len(recorded) >= 20
    roles = {trace["init"]["role"] for trace in recorded.values()}
    assert roles == {"source", "relay", "viewer"}
    # The runs saw what they are for: leaves, forgeries, and chunks played.
    drops: dict[str, int] = {}
    played = 0
    for trace in recorded.values():
        stats = trace["steps"][-1]["expect"]
        played += stats["chunks_played"]
        for kind, count in stats["drops"].items():
            drops[kind] = drops.get(kind, 0) + count
    assert {"bye", "forged"} <= drops.keys(), drops
    assert played > 100


@pytest.mark.parametrize("run", [run.name for run in RUNS])
def test_python_replay_matches_the_recording(run: str, recorded: dict[str, dict[str, Any]]) -> None:
    """A trace holds everything the core depends on: a fresh Python core replays it exactly."""
    for name, trace in recorded.items():
        if name.startswith(f"{run}/"):
            assert first_divergence(trace, replay(trace)) is None, name


@pytest.mark.parametrize("run", [run.name for run in RUNS])
def test_js_core_gives_the_same_output(
    run: str, recorded: dict[str, dict[str, Any]], js_results: dict[str, dict[str, Any]]
) -> None:
    """Same bytes, events, timers and figures from the JS core, step by step."""
    failures = []
    for name, trace in recorded.items():
        if name.startswith(f"{run}/"):
            found = divergence(trace, js_results[name])
            if found is not None:
                failures.append(f"{name}: {found}")
    assert not failures, "\n\n".join(failures)


def test_a_default_changed_in_one_language_fails(
    recorded: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The comparison bites: a JS core with one tunable off by a little diverges somewhere."""
    trace = copy.deepcopy(recorded["churn/peer3"])
    trace["init"]["config"]["urgent_s"] = SwarmConfig().urgent_s + 0.1
    result = replay_js({"changed": trace}, tmp_path)["changed"]
    found = divergence(recorded["churn/peer3"], result)
    assert found is not None


def test_default_configs_agree(tmp_path: Path) -> None:
    """Every tunable both cores have has the same default (the traces pass only overrides)."""
    script = tmp_path / "defaults.mjs"
    script.write_text(
        f'import {{ DEFAULT_CONFIG }} from "{ROOT / "web/static/js/swarm.js"}";\n'
        "process.stdout.write(JSON.stringify(DEFAULT_CONFIG));\n"
    )
    proc = subprocess.run(
        [node_path(), str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    js = json.loads(proc.stdout)
    defaults = SwarmConfig()
    python = {_camel(f.name): getattr(defaults, f.name) for f in dataclasses.fields(SwarmConfig)}
    differ = {k: (python[k], js[k]) for k in python.keys() & js.keys() if python[k] != js[k]}
    assert not differ
    assert set(js) == set(python)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario_python(path: Path) -> None:
    """A hand-written scenario (also run by tests/js/conformance.test.mjs) on the Python core."""
    trace = json.loads(path.read_text())
    assert first_divergence(trace, replay(trace)) is None
