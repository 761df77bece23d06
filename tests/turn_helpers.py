"""A real coturn (`turnserver`) on 127.0.0.1 for one test, with the TURN REST secret scheme.

Unprivileged flags only: a free listening port, a private relay port range, no TLS/DTLS, no CLI,
its pid file and database in the test's temporary folder. Ready means: it answers a STUN binding
request (polled, never a fixed sleep).
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from required_tools import required_program

REALM = "streamer.test"
START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class TurnServer:
    host: str
    port: int
    secret: str
    relay_ports: range
    log_path: Path

    @property
    def url(self) -> str:
        return f"turn:{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def turnserver_path() -> str:
    """The coturn binary; skips (fails under REQUIRE_TURN=1) when it is not installed."""
    return required_program("turnserver", "REQUIRE_TURN", "Debian coturn; `make coturn`")


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on `host` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def stun_binding_answered(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True when a STUN server answers a binding request on UDP host:port."""
    transaction_id = os.urandom(12)
    request = b"\x00\x01\x00\x00\x21\x12\xa4\x42" + transaction_id
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.sendto(request, (host, port))
            data, _ = sock.recvfrom(2048)
        except OSError:  # timeout or ICMP port unreachable
            return False
    return len(data) >= 20 and data[:2] == b"\x01\x01" and data[8:20] == transaction_id


@contextmanager
def running_turnserver(tmp_path: Path, secret: str = "turn-test-secret") -> Iterator[TurnServer]:
    binary = turnserver_path()
    host = "127.0.0.1"
    port = free_port(host)
    relay_base = random.Random(port).randrange(40_000, 60_000, 100)
    relay_ports = range(relay_base, relay_base + 100)
    log_path = tmp_path / "turnserver.log"
    command = [
        binary,
        "-n",
        "--listening-ip",
        host,
        "--listening-port",
        str(port),
        "--relay-ip",
        host,
        "--min-port",
        str(relay_ports.start),
        "--max-port",
        str(relay_ports.stop - 1),
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm",
        REALM,
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",
        "--pidfile",
        str(tmp_path / "turnserver.pid"),
        "--userdb",
        str(tmp_path / "turndb"),
        "--log-file",
        "stdout",
        "--simple-log",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = TurnServer(host, port, secret, relay_ports, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not stun_binding_answered(host, port):
            if proc.poll() is not None:
                pytest.fail(f"turnserver exited with {proc.returncode}:\n{server.log()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"turnserver did not answer in {START_TIMEOUT_S} s:\n{server.log()}")
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
