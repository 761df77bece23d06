"""A real redis-server on 127.0.0.1 for the cluster tests: a free port, a temporary folder, no
persistence. Ready means: it answers PING (polled, never a fixed sleep)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from required_tools import required_program
from turn_helpers import free_port

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def redis_server_path() -> str:
    """Debian's redis-server; skips (fails under REQUIRE_REDIS=1) when it is not installed."""
    return required_program("redis-server", "REQUIRE_REDIS", "Debian redis-server; `make redis`")


def answers_ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def running_redis(tmp_path: Path) -> Iterator[RedisServer]:
    binary = redis_server_path()
    host = "127.0.0.1"
    port = free_port(host)
    log_path = tmp_path / "redis.log"
    command = [
        binary,
        "--bind",
        host,
        "--port",
        str(port),
        "--dir",
        str(tmp_path),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "yes",
        "--logfile",
        str(log_path),
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(host, port, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers_ping(host, port):
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with {proc.returncode}:\n{server.log()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"redis-server did not answer in {START_TIMEOUT_S} s:\n{server.log()}")
            time.sleep(0.02)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_cluster_process(redis_url: str, procs: list[subprocess.Popen[str]], *options: str) -> str:
    """One `python -m signaling --redis` process on a free port (added to procs, which the
    test's fixture kills); returns its base URL, printed once it listens."""
    root = Path(__file__).resolve().parent.parent
    server = subprocess.Popen(
        [sys.executable, "-m", "signaling", "--port", "0", "--redis", redis_url, *options],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    procs.append(server)
    assert server.stdout is not None
    return server.stdout.readline().split()[-1]
