"""`streamer simulate` end to end through the CLI: JSON figures, sweep plot, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.cli import main
from streamer.sim import compiled

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REQUIRED = (
    "peers",
    "continuity_mean",
    "continuity_min",
    "startup_s_p50",
    "lag_s_p50",
    "lag_s_p95",
    "source_upload_ratio",
    "wall_s",
)


def test_simulate_twenty_peers_writes_sane_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sim.json"
    assert main(["simulate", "--peers", "20", "--duration", "10", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    for key in REQUIRED:
        assert doc[key] is not None, key
    assert doc["peers"] == 20
    assert 0.0 <= doc["continuity_min"] <= doc["continuity_mean"] <= 1.0
    assert doc["viewers_started"] >= 15  # churn removes ~5%; the rest start
    assert 0.0 < doc["startup_s_p50"] < 10.0
    assert 0.0 < doc["lag_s_p50"] <= doc["lag_s_p95"] < 10.0
    assert 0.5 <= doc["source_upload_ratio"] <= 2.5  # source uplink is 2x: it cannot send more
    assert doc["wall_s"] > 0.0  # measured, not assumed (how long is the machine's business)
    assert doc["settings"]["seed"] == 1 and doc["command"].startswith("streamer simulate")
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[0] == "peers" and "\n20 " in table


def test_same_seed_gives_the_same_figures(tmp_path: Path) -> None:
    docs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        assert (
            main(
                ["simulate", "--peers", "10", "--duration", "6", "--seed", "3", "--json", str(out)]
            )
            == 0
        )
        doc = json.loads(out.read_text())
        docs.append({k: doc[k] for k in REQUIRED if k != "wall_s"})
    assert docs[0] == docs[1]


def test_sweep_writes_every_size_and_a_png(tmp_path: Path) -> None:
    out, png = tmp_path / "sweep.json", tmp_path / "sweep.png"
    args = [
        "simulate",
        "--sweep",
        "5,15",
        "--duration",
        "6",
        "--json",
        str(out),
        "--plot",
        str(png),
    ]
    assert main(args) == 0
    doc = json.loads(out.read_text())
    assert [r["peers"] for r in doc["results"]] == [5, 15]
    for r in doc["results"]:
        assert r["fluid_bound_ratio"] > 0 and r["continuity_mean"] is not None
    assert doc["peers"] == 15  # the headline keys are the largest size's
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


@pytest.mark.parametrize(
    "args",
    [
        ["--sweep", "10,abc"],
        ["--peers", "0"],
        ["--upload-range", "3,1"],
        ["--upload-range", "fast"],
        ["--loss", "1.5"],
        ["--plot", "x.png"],  # needs --sweep
        ["--sweep", "5", "--plot", "x.jpg"],
    ],
)
def test_bad_arguments_are_one_line_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--duration", "2", *args]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("streamer simulate: error:")


def test_small_runs_and_tests_use_the_pure_python_core(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    assert main(["simulate", "--peers", "5", "--duration", "3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["core"] == "python" == compiled.core_kind()


def test_source_key_changes_with_any_source_file(tmp_path: Path) -> None:
    package = tmp_path / "streamer"
    (package / "swarm").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    core = package / "swarm" / "peer.py"
    core.write_text("X = 1\n")
    before = compiled.source_key(package)
    assert compiled.source_key(package) == before
    core.write_text("X = 2\n")
    assert compiled.source_key(package) != before


def test_compiled_core_asked_for_but_not_buildable_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(compiled, "missing_tools", lambda: "no C compiler (cc/gcc) on PATH")
    assert main(["simulate", "--peers", "5", "--duration", "2", "--core", "mypyc"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "streamer simulate: error: cannot compile the swarm core: no C compiler (cc/gcc) on PATH"
    )


@pytest.mark.slow
def test_compiled_core_gives_the_same_figures_as_pure_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The mypyc build (made here, or by test_sim.py from the same sources) runs the very same
    simulation."""
    docs = {}
    for core in ("python", "mypyc"):
        out = tmp_path / f"{core}.json"
        args = ["simulate", "--peers", "30", "--duration", "8", "--seed", "2", "--core", core]
        assert main([*args, "--json", str(out)]) == 0
        docs[core] = json.loads(out.read_text())
    assert docs["python"]["core"] == "python" and docs["mypyc"]["core"] == "mypyc"
    figures = [k for k in docs["python"] if k not in ("wall_s", "core", "command")]
    assert "events" in figures and "lag_s_p95" in figures
    assert {k: docs["mypyc"][k] for k in figures} == {k: docs["python"][k] for k in figures}
    build = compiled.cache_root() / "compiled-core" / compiled.source_key(compiled.package_dir())
    assert any(build.glob("streamer/swarm/peer.*.so"))


def test_progress_is_reported_while_the_simulation_runs() -> None:
    from dataclasses import replace

    from streamer.bench.simulate import SIMULATE_DEFAULTS, simulate

    lines: list[str] = []
    sc = replace(SIMULATE_DEFAULTS, peers=40, duration_s=6, seed=1)
    simulate(sc, lines.append, report_every_s=0.0)
    assert lines and all(line.startswith("simulate: 40 peers, ") for line in lines)
    reached = [float(line.split(", ")[1].split(" of ")[0]) for line in lines]
    assert reached == sorted(reached) and 0.0 < reached[-1] <= 6.0
