"""Write a node's stats as JSON, atomically (a reader never sees half a file)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from streamer.errors import UserError


def write_stats_json(path: str | Path, stats: Mapping[str, Any]) -> None:
    """Write `stats` to `path` via a temporary file and a rename. UserError when it cannot."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(dict(stats), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, target)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write stats to {target}: {error.strerror}") from None
