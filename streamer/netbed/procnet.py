"""Is anyone listening yet? Read from /proc/PID/net/{tcp,udp}, which shows PID's own namespace.

Why: the bed's servers listen inside namespaces the controlling process cannot connect into, but
it can read their socket tables, so it waits on "port bound" instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


def bound_ports(table_text: str, tcp: bool) -> set[int]:
    """Local ports in LISTEN state (TCP) or bound (UDP) in a /proc/net/{tcp,udp} table."""
    ports: set[int] = set()
    for line in table_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or ":" not in fields[1]:
            continue
        state = fields[3]
        if state == (TCP_LISTEN if tcp else UDP_UNCONNECTED):
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def is_bound(pid: int, port: int, tcp: bool = True) -> bool:
    name = "tcp" if tcp else "udp"
    try:
        text = Path(f"/proc/{pid}/net/{name}").read_text()
    except OSError:
        return False
    return port in bound_ports(text, tcp)


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll condition until true (True) or timeout_s passed (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
