"""Child processes for the bench: `python -m streamer ...` each with its own log, cleaned up always.

Rules: every child runs in its own session, so a Ctrl-C at the terminal reaches only the bench,
which then stops the children itself with SIGTERM (they write their stats and leave cleanly) and
SIGKILLs whatever is still alive after `kill_after_s`. `close()` is idempotent and runs on every
exit path (the group is a context manager).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process from /proc/PID/stat; None if unavailable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S
    except (IndexError, ValueError):
        return None


@dataclass
class Child:
    """One child process, its log file and how far the bench has read it."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    read_offset: int = 0
    last_cpu_s: float | None = None

    def read_new_log(self, limit_bytes: int = 65536) -> str:
        """Log text written since the last call (at most limit_bytes, the newest)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                end = log.tell()
                start = max(self.read_offset, end - limit_bytes)
                log.seek(start)
                data = log.read(end - start)
        except OSError:
            return ""
        self.read_offset = end
        return data.decode("utf-8", "replace")

    def log_tail(self, size_bytes: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-size_bytes:].decode("utf-8", "replace")

    def sample_cpu_s(self) -> float | None:
        cpu_s = proc_cpu_s(self.popen.pid)
        if cpu_s is not None:
            self.last_cpu_s = cpu_s
        return self.last_cpu_s


@dataclass
class ProcessGroup:
    workdir: Path
    kill_after_s: float = 15.0
    die_with_parent: bool = False
    """Linux: children get SIGTERM if this process dies without stopping them (SIGKILL, crash)."""
    children: list[Child] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        *args: str,
        stdout_pipe: bool = False,
        prefix: Sequence[str] = (),
        module: str = "streamer",
    ) -> Child:
        """Start `python -m MODULE ARGS` with stderr (and stdout unless piped) to NAME.log.

        `prefix` runs it through another command first, e.g. `ip netns exec NS`.
        """
        return self.spawn_argv(
            name, [*prefix, sys.executable, "-m", module, *args], stdout_pipe=stdout_pipe
        )

    def spawn_argv(self, name: str, argv: Sequence[str], stdout_pipe: bool = False) -> Child:
        """Start any command with stderr (and stdout unless piped) to NAME.log."""
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(
                list(argv),
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else log,
                stderr=log,
                start_new_session=True,
                preexec_fn=_term_on_parent_death if self.die_with_parent else None,
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def alive(self) -> list[Child]:
        return [c for c in self.children if c.popen.poll() is None]

    def stop(self, children: list[Child]) -> None:
        """SIGTERM `children`, wait for them up to kill_after_s, then SIGKILL the rest."""
        for child in children:
            child.sample_cpu_s()
            if child.popen.poll() is None:
                _signal(child.popen, signal.SIGTERM)
        deadline = time.monotonic() + self.kill_after_s
        for child in children:
            try:
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(child.popen, signal.SIGKILL)
                child.popen.wait()
        for child in children:
            if child.popen.stdout is not None:
                child.popen.stdout.close()

    def close(self) -> None:
        self.stop(self.children)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _term_on_parent_death() -> None:
    """In the child before exec: SIGTERM when the parent dies (kept across exec, e.g. through
    `ip netns exec`; dropped by a command that changes its user, like setpriv)."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def _signal(popen: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        popen.send_signal(signum)
