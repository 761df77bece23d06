"""A mypyc-compiled copy of the swarm core and the simulator, built once per source version.

Why: the simulator spends its time in the pure-Python core (~40 us per event); the same source
compiled by mypyc runs the same events ~3x faster with identical results, which is what brings a
10,000-peer simulation from most of an hour to minutes. The copy lives in a cache directory keyed
by a hash of the package's sources, so an edited core is never shadowed by a stale build, and the
working tree never holds extension modules. A run uses it by starting a child process with the
copy first on PYTHONPATH (`streamer simulate --core`).

Rules: nothing here changes behaviour - the compiled modules are the same files; a build that
fails (no mypyc, no C compiler, a type error mypyc rejects) leaves no trace but its log, and the
caller falls back to the pure-Python core.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamer

COMPILED_MODULES = (
    "streamer/protocol/errors.py",
    "streamer/protocol/messages.py",
    "streamer/protocol/codec.py",
    "streamer/protocol/chunk_header.py",
    "streamer/swarm/config.py",
    "streamer/swarm/events.py",
    "streamer/swarm/chunks.py",
    "streamer/swarm/neighbours.py",
    "streamer/swarm/playback.py",
    "streamer/swarm/scheduler.py",
    "streamer/swarm/outbox.py",
    "streamer/swarm/context.py",
    "streamer/swarm/drain.py",
    "streamer/swarm/announcing.py",
    "streamer/swarm/seeding.py",
    "streamer/swarm/serving.py",
    "streamer/swarm/playout.py",
    "streamer/swarm/planning.py",
    "streamer/swarm/fetching.py",
    "streamer/swarm/exchange.py",
    "streamer/swarm/peer.py",
    "streamer/sim/network.py",
    "streamer/sim/scenario.py",
)
"""What the simulator runs per event: the wire codec, the swarm core, the network model."""

KEEP_BUILDS = 4
"""Builds kept in the cache (most recently used); older ones are removed."""

CHILD_ENV = "STREAMER_COMPILED_CHILD"
"""Set in the child process that should run on the compiled copy (it never re-executes)."""


@dataclass(frozen=True, slots=True)
class Build:
    path: Path | None
    """The directory to put first on PYTHONPATH, or None when no build could be made."""
    reason: str
    """What happened, for the progress line ('cached', 'built in 24 s', or why it failed)."""


def core_kind() -> str:
    """'mypyc' when this process runs the compiled swarm core, else 'python'."""
    import streamer.swarm.peer as peer

    return "python" if (peer.__file__ or "").endswith(".py") else "mypyc"


def package_dir() -> Path:
    return Path(streamer.__file__).resolve().parent


def source_key(package: Path) -> str:
    """A hash of every source file of the package, the Python and the mypy version."""
    digest = hashlib.sha256()
    digest.update(sys.version.encode())
    digest.update(_mypy_version().encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def cache_root() -> Path:
    """$STREAMER_CACHE_DIR, else $XDG_CACHE_HOME/streamer, else ~/.cache/streamer."""
    explicit = os.environ.get("STREAMER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "streamer"


def missing_tools() -> str | None:
    """Why a build cannot even start here (None: mypyc and a C compiler are present)."""
    if importlib.util.find_spec("mypyc") is None:
        return "mypyc is not installed (pip install mypy)"
    compiler = os.environ.get("CC", "cc").split()[0]
    if shutil.which(compiler) is None and shutil.which("gcc") is None:
        return "no C compiler (cc/gcc) on PATH"
    return None


def ensure_build(note: Callable[[str], None] | None = None) -> Build:
    """The compiled copy of the current sources: from the cache, or built now (~30 s)."""
    package = package_dir()
    key = source_key(package)
    builds = cache_root() / "compiled-core"
    final = builds / key
    if (final / "streamer").is_dir():
        os.utime(final)  # most recently used: kept by _prune
        return Build(final, "cached")
    why_not = missing_tools()
    if why_not is not None:
        return Build(None, why_not)
    builds.mkdir(parents=True, exist_ok=True)
    if note is not None:
        note(f"compiling the swarm core with mypyc (once per source version, ~30 s): {final}")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="build-", dir=builds))
    log = builds / f"{key}.log"
    try:
        shutil.copytree(package, work / "streamer", ignore=shutil.ignore_patterns("__pycache__"))
        with log.open("w") as out:
            done = subprocess.run(
                [sys.executable, "-m", "mypyc", *COMPILED_MODULES],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": ""},
                check=False,
            )
        if done.returncode != 0:
            return Build(None, f"mypyc failed (exit {done.returncode}); its log: {log}")
        for leftover in ("build", ".mypy_cache"):
            shutil.rmtree(work / leftover, ignore_errors=True)
        try:
            work.rename(final)
        except OSError:
            if not (final / "streamer").is_dir():  # (another run that built it first is fine)
                raise
    except OSError as error:
        return Build(None, f"cannot build in {builds}: {error}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.unlink(missing_ok=True)
    _prune(builds, keep=final)
    return Build(final, f"built in {time.monotonic() - started:.0f} s")


def child_env(build_path: Path) -> dict[str, str]:
    """The environment of a child process that imports `streamer` from the compiled copy."""
    env = dict(os.environ)
    paths = [str(build_path), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONSAFEPATH"] = "1"  # (else `python -m` in a checkout imports ./streamer first)
    env[CHILD_ENV] = "1"
    return env


def _prune(builds: Path, keep: Path) -> None:
    entries = [p for p in builds.iterdir() if p.is_dir() and p != keep and p.name[:6] != "build-"]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _mypy_version() -> str:
    try:
        from mypy.version import __version__
    except ImportError:
        return "none"
    return __version__


def main() -> int:
    """`python -m streamer.sim.compiled`: build (or find) the compiled copy, print its path."""
    build = ensure_build(lambda line: print(line, file=sys.stderr))
    if build.path is None:
        print(f"cannot compile the swarm core: {build.reason}", file=sys.stderr)
        return 1
    print(build.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
