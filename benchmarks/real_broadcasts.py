"""Real broadcasts side by side with client-server: inputs as encoders send them, each broadcast
as it is (`streamer bench --as-is`: the broadcaster's own --transcode, its own chunk lengths).

    .venv/bin/python benchmarks/real_broadcasts.py [--duration 90] [--peers 4] [--relays 1]

Inputs (made here with PyAV, seeded): scene-cut GOPs of 1-8 s, copied while they are within the
GOP limit and re-encoded from the first longer one (`auto`), and kept as they are (`never`: chunks
of any length); a keyframe every 10 s (`auto`: re-encoded from its first keyframe); a file with a
damaged stretch (random bytes over 3% of its media data). Figures go to docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from media_helpers import ClipSpec, make_clip, variable_gop_times  # noqa: E402

CLIP_S = 40.0


def damaged(clean: Path, out: Path, share: float = 0.03, seed: int = 7) -> Path:
    """clean with random bytes over `share` of its length, in the middle of its media data."""
    data = bytearray(clean.read_bytes())
    mdat = data.find(b"mdat")
    start = mdat + (len(data) - mdat) // 2
    rng = random.Random(seed)
    for i in range(start, min(len(data), start + int(share * len(data)))):
        data[i] = rng.randrange(256)
    out.write_bytes(bytes(data))
    return out


def inputs(work: Path) -> list[tuple[str, Path, str]]:
    """(name, file, --transcode) of each input."""
    spec = ClipSpec(duration_s=CLIP_S, width=640, height=360)
    cuts = make_clip(
        work / "scene-cuts.mp4",
        ClipSpec(**{**spec.__dict__, "keyframes_s": variable_gop_times(CLIP_S, seed=3)}),
    )
    long_gop = make_clip(
        work / "gop-10s.mp4",
        ClipSpec(**{**spec.__dict__, "keyframes_s": tuple(float(t) for t in range(0, 40, 10))}),
    )
    clean = make_clip(work / "clean.mp4", spec)
    return [
        ("scene cuts 1-8 s", cuts, "auto"),
        ("scene cuts 1-8 s", cuts, "never"),
        ("keyframe every 10 s", long_gop, "auto"),
        ("damaged stretch", damaged(clean, work / "damaged.mp4"), "auto"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90.0)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--relays", type=int, default=1)
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="real-broadcasts-"))
    rows = []
    for name, path, transcode in inputs(work):
        out = work / f"{path.stem}-{transcode}.json"
        command = [
            sys.executable,
            "-m",
            "streamer",
            "bench",
            "--input",
            str(path),
            "--as-is",
            "--transcode",
            transcode,
            "--peers",
            str(args.peers),
            "--relays",
            str(args.relays),
            "--duration",
            str(args.duration),
            "--json",
            str(out),
        ]
        print(f"== {name}, --transcode {transcode}", flush=True)
        subprocess.run(command, check=True, cwd=ROOT)
        result = json.loads(out.read_text())
        viewers = result["swarm"]["per_viewer"]
        rows.append(
            {
                "input": name,
                "transcode": transcode,
                "continuity_per_watcher": [v.get("continuity") for v in viewers],
                "chunks_missed": sum(v.get("chunks_missed") or 0 for v in viewers),
                "reanchored_s_max": max((v.get("reanchored_s") or 0.0) for v in viewers),
                "lag_s_p95": result["lag_s_p95"],
                "startup_s_p50": result["startup_s_p50"],
                "source_upload_ratio": result["source_upload_ratio"],
                "baseline_continuity_min": result["baseline_continuity_min"],
                "baseline_lag_s_p95": result["baseline_lag_s_p95"],
                "baseline_source_upload_ratio": result["baseline_source_upload_ratio"],
            }
        )
    for row in rows:
        print(json.dumps(row))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
