"""Swarm benchmark: now a thin wrapper over `streamer bench` (streamer/bench/), kept so old
commands still work. Prefer the command itself:

    .venv/bin/python -m streamer bench --peers 20 --relays 2 --duration 60 --json r.json

`--watchers N` is accepted as the old spelling of `--peers N`; every other option is passed on.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streamer.cli import main


def translate(argv: list[str]) -> list[str]:
    """Old option names -> `streamer bench` ones."""
    renamed = {"--watchers": "--peers", "--stagger-s": "--stagger"}
    out = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        out.append(renamed.get(name, name) + sep + value)
    return ["bench", *out]


if __name__ == "__main__":
    raise SystemExit(main(translate(sys.argv[1:])))
