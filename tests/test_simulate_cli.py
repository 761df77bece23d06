"""`streamer simulate` end to end through the CLI: JSON figures, sweep plot, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamer.cli import main

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
    assert 0.0 < doc["wall_s"] < 30.0
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
