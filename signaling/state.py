"""What one running server holds (registry, metrics, open connections), under one aiohttp AppKey.

Kept apart from app.py so the page handlers can reach it without importing the socket code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from signaling.channels import Registry
from signaling.config import ServerConfig
from signaling.directory import Directory
from signaling.iplimits import IpLimits
from signaling.metrics import Metrics
from signaling.outbox import Outbox
from signaling.ratelimit import TokenBucket


@dataclass(eq=False)
class Connection:
    """One WebSocket: its outbox, rate limits and (once joined) its peer id."""

    ws: web.WebSocketResponse
    outbox: Outbox
    msg_bucket: TokenBucket
    byte_bucket: TokenBucket
    #: The TCP transport, to cut a connection that stopped reading without a closing handshake.
    transport: Any
    #: The client's IP address (per-address caps).
    address: str = ""
    peer_id: str | None = None
    #: The channel it joined (per-address channel caps).
    channel: str | None = None
    #: Counted in the cluster's per-address socket counts (released when it closes).
    counted_in_cluster: bool = False
    #: The channel it is counted in by the cluster's per-address channel counts (released when
    #: it closes; a replaced socket keeps its count until then).
    cluster_channel: str | None = None
    #: When the TURN credentials this peer holds expire (None: it holds none from our secret).
    turn_expires_at_unix_s: int | None = None
    rate_violations: int = 0
    dropped: bool = False
    #: The client closed the socket normally (1000/1001): it left for good, no grace period.
    said_goodbye: bool = False


@dataclass
class ServerState:
    config: ServerConfig
    directory: Directory
    ip_limits: IpLimits
    metrics: Metrics = field(default_factory=Metrics)
    connections: set[Connection] = field(default_factory=set)
    by_peer: dict[str, Connection] = field(default_factory=dict)
    #: Set when the server shuts down: its peers' sockets close without their saying goodbye.
    shutting_down: bool = False
    #: Sockets closed so far, refused ones included (the standalone server's GC schedule).
    closed_connections: int = 0
    started_at_s: float = field(default_factory=time.monotonic)
    #: Wall clock for TURN credential expiry (Unix seconds; tests replace it).
    wall_clock: Callable[[], float] = time.time
    #: Closed sockets whose records are still being released (a reference keeps each task).
    disconnects: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def registry(self) -> Registry:
        """This process's peers and channels."""
        return self.directory.registry


STATE = web.AppKey("signaling_state", ServerState)
