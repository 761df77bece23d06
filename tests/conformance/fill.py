"""Write a hand-written scenario's expected outputs: every step whose "expect" is "?" gets what
the Python core gives there, then the JS core replays the file and any step where it differs is
printed. The values are a draft: keep only those that state the behaviour the scenario is
about, and check each against that behaviour, not against the core that wrote it.

    .venv/bin/python tests/conformance/fill.py tests/conformance/scenarios/NAME.json...
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.traces import first_divergence, replay

REPLAY_JS = Path(__file__).resolve().parent / "replay.mjs"


def fill(path: Path) -> None:
    scenario = json.loads(path.read_text())
    outputs = replay(scenario)
    for step, output in zip(scenario["steps"], outputs, strict=True):
        if step.get("expect") == "?":
            step["expect"] = output
    path.write_text(json.dumps(scenario, indent=1) + "\n")
    proc = subprocess.run(
        ["node", str(REPLAY_JS), str(path)], capture_output=True, text=True, check=True
    )
    result = json.loads(proc.stdout)
    if "error" in result:
        print(f"{path.name}: the JS core threw at step {len(result['outputs'])}: {result['error']}")
        return
    found = first_divergence(scenario, result["outputs"])
    print(f"{path.name}: {'both cores agree' if found is None else found}")


if __name__ == "__main__":
    for name in sys.argv[1:]:
        fill(Path(name))
