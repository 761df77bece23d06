"""The simulator against the namespace test bed: same profile, same seed, figures side by side.

Runs `streamer netbed` (real namespaces; root) or reads a saved run of it, then `streamer
simulate --profile netbed` with the same duration, seed and stream rate (by default 3 runs with
their own draws, averaged), and prints each figure of both with the difference and whether it is
within the margin streamer.sim.compare states.

    sudo .venv/bin/python benchmarks/sim_vs_bed.py --duration 40          # runs the bed (~1.5 min)
    .venv/bin/python benchmarks/sim_vs_bed.py --bed-json netbed.json      # against a saved run
    .venv/bin/python benchmarks/sim_vs_bed.py --duration 40 --save-bed netbed.json --json cmp.json

Exit status 0 when every figure is within its margin, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
try:
    import streamer  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))

from streamer.sim.compare import MARGINS, compare, comparison_table, per_viewer_table  # noqa: E402


def _streamer(*args: str) -> None:
    argv = [sys.executable, "-m", "streamer", *args]
    print("$ " + " ".join(argv[2:]), file=sys.stderr, flush=True)
    done = subprocess.run(argv, check=False, cwd=ROOT, stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"sim_vs_bed: `streamer {args[0]}` failed (exit {done.returncode})")


def run_bed(duration_s: float, seed: int, out: Path) -> dict[str, Any]:
    _streamer(
        "netbed", "--duration", f"{duration_s:g}", "--seed", str(seed), "--no-baseline",
        "--json", str(out),
    )  # fmt: skip
    return json.loads(out.read_text())


def run_sim(
    duration_s: float, seed: int, run_seed: int, stream_bps: float | None, out: Path
) -> dict[str, Any]:
    args = ["simulate", "--profile", "netbed", "--duration", f"{duration_s:g}"]
    args += ["--seed", str(seed), "--run-seed", str(run_seed), "--json", str(out)]
    if stream_bps:
        args += ["--stream-rate-bps", f"{stream_bps:.0f}"]
    _streamer(*args)
    return json.loads(out.read_text())


def _bed_setting(bed: dict[str, Any], option: str) -> str | None:
    words = str(bed.get("command", "")).split()
    return words[words.index(option) + 1] if option in words[:-1] else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bed-json", help="a saved `streamer netbed --json` run (else: run it)")
    parser.add_argument("--save-bed", help="where to keep the bed's JSON when this runs it")
    parser.add_argument("--duration", type=float, default=40.0, help="per viewer (40 s)")
    parser.add_argument("--seed", type=int, default=1, help="the bed's sites and draws (1)")
    parser.add_argument("--sim-runs", type=int, default=3, help="simulated runs averaged (3)")
    parser.add_argument("--json", help="write both figure sets and the comparison here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sim-vs-bed-"))
    if args.bed_json:
        bed = json.loads(Path(args.bed_json).read_text())
        # A saved run fixes the duration and seed the simulator must use.
        duration_s = float(_bed_setting(bed, "--duration") or args.duration)
        seed = int(_bed_setting(bed, "--seed") or args.seed)
    else:
        duration_s, seed = args.duration, args.seed
        bed = run_bed(duration_s, seed, Path(args.save_bed or work / "netbed.json"))
    stream_bps = bed.get("swarm", {}).get("figures", {}).get("stream_rate_bps") or bed.get(
        "stream_rate_bps"
    )
    sims = [
        run_sim(duration_s, seed, seed + 1000 * k, stream_bps, work / f"sim{k}.json")
        for k in range(max(1, args.sim_runs))
    ]
    rows = compare(bed, sims)
    print(f"bed: {bed.get('command')}")
    print(f"simulator: {sims[0].get('command')} (+ {len(sims) - 1} more run seeds, averaged)")
    print()
    print(per_viewer_table(bed, sims))
    print()
    print(comparison_table(rows))
    met = sum(1 for r in rows if r["within"])
    print(f"\n{met} of {len(MARGINS)} figures within their margins")
    if args.json:
        doc = {"bed": bed, "simulator": sims, "comparison": rows}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if met == len(MARGINS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
