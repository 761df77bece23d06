"""The aiohttp application: /ws signaling plus the pages; `start_server` embeds it anywhere.

Rules: every client message goes through rate limit -> parse -> directory, and any refusal is an
`error` to that client only; nothing a client sends can raise out of its handler; sends go
through a bounded Outbox so no client can block another; one address holds at most
`max_connections_per_ip` sockets and `max_channels_per_ip` channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from signaling import pages
from signaling.background import Periodic
from signaling.channels import Registry, new_peer_id
from signaling.client_address import client_address
from signaling.config import ServerConfig
from signaling.directory import Directory, Events, LocalDirectory
from signaling.iplimits import IpLimits
from signaling.outbox import Outbox
from signaling.protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    End,
    GetPeers,
    Join,
    Ping,
    ProtocolError,
    Publish,
    Signal,
    Status,
    encode,
    error_message,
    parse_client_message,
)
from signaling.ratelimit import TokenBucket
from signaling.redis_directory import RedisDirectory
from signaling.state import STATE, Connection, ServerState
from signaling.turn_credentials import expiry_unix_s, needs_refresh
from signaling_wire import peer_id_for

log = logging.getLogger(__name__)

FATAL_FLUSH_S = 0.5
CLOSE_TIMEOUT_S = 2.0
#: On shutdown, how long closed sockets may take to release their records before the directory
#: stops (a Redis that stopped answering must not hold the shutdown).
DISCONNECTS_TIMEOUT_S = 5.0


def create_app(config: ServerConfig) -> web.Application:
    """The whole server as an aiohttp Application (routes, pages, shutdown handling)."""
    app = web.Application(client_max_size=64 * 1024)
    registry = Registry(
        max_peers_per_channel=config.max_peers_per_channel,
        max_channels=config.max_channels,
        owner_ttl_s=config.owner_ttl_s,
        broadcast_token=config.broadcast_token,
        max_waiting_channels=config.max_waiting_channels,
        remote_peers=config.redis_url is not None,
        peer_grace_s=config.peer_grace_s,
    )
    directory: Directory
    if config.redis_url is None:
        directory = LocalDirectory(registry)
    else:
        directory = RedisDirectory(registry, config)
    app[STATE] = ServerState(
        config=config,
        directory=directory,
        ip_limits=IpLimits(
            config.max_connections_per_ip, config.max_channels_per_ip, config.limit_loopback
        ),
    )
    app.router.add_get("/ws", websocket_handler)
    pages.setup(app)
    app.cleanup_ctx.append(_directory)
    app.cleanup_ctx.append(_sweeper)
    app.cleanup_ctx.append(_departures)
    app.on_shutdown.append(_close_all)
    return app


async def _directory(app: web.Application) -> AsyncIterator[None]:
    """Start the directory (a cluster's: connect to Redis) before the first socket; stop it last."""
    state = app[STATE]
    events = Events(
        deliver=lambda peer_ids, message: _send_to_peers(state, peer_ids, message),
        replaced=lambda peer_id: _close_replaced(state, peer_id),
        signal_delivered=state.metrics.signal_seconds.observe,
    )
    await state.directory.start(events)
    yield
    if state.disconnects:  # closed sockets still releasing their records: bounded, then go
        await asyncio.wait(set(state.disconnects), timeout=DISCONNECTS_TIMEOUT_S)
    await state.directory.close()


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Periodically forget owned channels whose broadcaster has been gone for owner_ttl_s."""
    state = app[STATE]

    async def sweep() -> None:
        try:
            await state.directory.sweep(time.monotonic())
        finally:  # even when Redis is unreachable for a moment
            _refresh_turn_credentials(state)

    sweeper = Periodic("sweep", state.config.sweep_interval_s, sweep)
    sweeper.start()
    yield
    await sweeper.stop()


#: How often departed peers' grace periods are checked (neighbours hear within this of its end).
DEPARTURE_CHECK_S = 0.25


async def _departures(app: web.Application) -> AsyncIterator[None]:
    """Tell neighbours of peers that went without a goodbye once their grace period is over."""
    state = app[STATE]

    async def expire() -> None:
        await state.directory.expire(time.monotonic())

    departures = Periodic("departure check", DEPARTURE_CHECK_S, expire)
    departures.start()
    yield
    await departures.stop()


def _refresh_turn_credentials(state: ServerState) -> None:
    """Send fresh ICE servers to peers whose TURN credentials are past half their lifetime.

    A peer that stays connected for longer than the credential lifetime would otherwise set up
    new connections with expired credentials (coturn refuses them).
    """
    config = state.config
    if config.turn_secret is None:
        return
    now_unix_s = state.wall_clock()
    for conn in list(state.connections):
        expires = conn.turn_expires_at_unix_s
        if conn.peer_id is None or expires is None:
            continue
        if needs_refresh(expires, now_unix_s, config.turn_ttl_s):
            _send(state, conn, _ice_servers_message(state, conn, conn.peer_id, now_unix_s))


def _ice_servers_for(
    state: ServerState, conn: Connection, peer_id: str, now_unix_s: float
) -> list[dict[str, Any]]:
    """This peer's ICE servers (fresh TURN credentials), remembering when they expire."""
    if state.config.turn_secret is not None:
        conn.turn_expires_at_unix_s = expiry_unix_s(now_unix_s, state.config.turn_ttl_s)
    return state.config.ice_servers_for_peer(peer_id, now_unix_s)


def _ice_servers_message(
    state: ServerState, conn: Connection, peer_id: str, now_unix_s: float
) -> dict[str, Any]:
    return {
        "type": "ice_servers",
        "ice_servers": _ice_servers_for(state, conn, peer_id, now_unix_s),
    }


async def _close_all(app: web.Application) -> None:
    """On shutdown, close every socket with 1001 so clients know to reconnect elsewhere."""
    state = app[STATE]
    state.shutting_down = True  # its peers come back (here or elsewhere): no goodbyes
    # Each close is bounded (a client that never answers the close frame is cut off): a
    # shutdown must not wait on a peer.
    closing = [
        _close(conn, WSCloseCode.GOING_AWAY, b"server shutdown") for conn in list(state.connections)
    ]
    await asyncio.gather(*closing, return_exceptions=True)


# --- sending ---------------------------------------------------------------------------------


def _send(state: ServerState, conn: Connection, message: dict[str, Any]) -> None:
    text = encode(message)
    if conn.outbox.send(text):
        state.metrics.count_out(message["type"], len(text))


def _send_to_peers(state: ServerState, peer_ids: Iterable[str], message: dict[str, Any]) -> None:
    """Encode once, queue for each peer (a broadcast to 5,000 peers shares one string)."""
    text = encode(message)
    for peer_id in peer_ids:
        conn = state.by_peer.get(peer_id)
        if conn is not None and conn.outbox.send(text):
            state.metrics.count_out(message["type"], len(text))


def _send_error(state: ServerState, conn: Connection, error: ProtocolError) -> None:
    state.metrics.count_error(error.code)
    _send(state, conn, error_message(error.code, error.message, error.fatal))


def _drop(conn: Connection) -> None:
    """Cut a connection at once (no closing handshake: it is not reading anyway)."""
    if conn.dropped:
        return
    conn.dropped = True
    if conn.transport is not None:
        conn.transport.abort()


# --- the handler -----------------------------------------------------------------------------


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    state = request.app[STATE]
    config = state.config
    ws = web.WebSocketResponse(heartbeat=config.heartbeat_s, max_msg_size=config.ws_max_msg_bytes)
    await ws.prepare(request)
    now = time.monotonic()
    conn: Connection

    def on_overflow() -> None:
        state.metrics.dropped_slow.inc()
        state.metrics.count_error("slow_consumer")
        _drop(conn)

    conn = Connection(
        ws=ws,
        outbox=Outbox(ws, config.send_queue_max_msgs, config.send_queue_max_bytes, on_overflow),
        msg_bucket=TokenBucket(config.rate_msgs_per_s, config.rate_burst_msgs, now),
        byte_bucket=TokenBucket(config.rate_bytes_per_s, config.rate_burst_bytes, now),
        transport=request.transport,
        address=client_address(
            request.remote or "",
            request.headers.getall("X-Forwarded-For", []),
            config.trusted_proxies,
        ),
    )
    if not await _admit(state, conn):
        cap = config.max_connections_per_ip
        _send_error(
            state,
            conn,
            ProtocolError(
                "too_many_connections",
                f"too many connections from your address (at most {cap})",
                fatal=True,
            ),
        )
        await _close(conn, WSCloseCode.TRY_AGAIN_LATER)
        await conn.outbox.close()
        state.closed_connections += 1
        _release_heartbeat(ws)
        return ws
    state.connections.add(conn)
    state.metrics.connections_accepted.inc()
    try:
        await _serve(state, conn)
    except Exception:  # a bug must cost one connection, never the server
        log.exception("signaling connection failed")
    finally:
        # In a task of its own: aiohttp may cancel this handler when the client goes, and a
        # cancel between the releases below would leave the address's counts and the peer's
        # records behind (seen: a cluster's channel count kept after its socket closed).
        task = asyncio.get_running_loop().create_task(_disconnect(state, conn))
        state.disconnects.add(task)
        task.add_done_callback(state.disconnects.discard)
        await asyncio.shield(task)
        _release_heartbeat(ws)
    return ws


async def _admit(state: ServerState, conn: Connection) -> bool:
    """Count the socket against its address's cap: this process's first, then the cluster's
    (a cluster's cap is the same number for all its processes together)."""
    limits = state.ip_limits
    if not limits.connect(conn.address):
        return False
    if limits.caps_connections(conn.address):
        if not await state.directory.admit_address(conn.address, limits.max_connections_per_ip):
            limits.disconnect(conn.address)
            return False
        conn.counted_in_cluster = True
    return True


def _release_heartbeat(ws: web.WebSocketResponse) -> None:
    """Stop a closed socket's heartbeat for good.

    aiohttp (3.14) re-arms the heartbeat when the peer's close frame arrives after our own close
    (every refused join does this); the timer then keeps the whole connection in memory for
    another 1.5 heartbeats (30 s), which a flood of refused joins turns into megabytes. Private
    attributes, so each step is skipped if a later aiohttp lacks it.
    """
    if hasattr(ws, "_heartbeat"):
        ws._heartbeat = None  # no re-arm from data still arriving
    cancel = getattr(ws, "_cancel_heartbeat", None)
    if callable(cancel):
        cancel()


async def _serve(state: ServerState, conn: Connection) -> None:
    ws = conn.ws
    while not ws.closed and not conn.dropped:
        timeout_s = None if conn.peer_id else state.config.join_timeout_s
        try:
            msg = await ws.receive(timeout=timeout_s)
        except TimeoutError:
            _send_error(state, conn, ProtocolError("join_timeout", "no join in time", fatal=True))
            await _close(conn, WSCloseCode.POLICY_VIOLATION)
            return
        if msg.type == WSMsgType.TEXT:
            fatal = await _on_text(state, conn, msg.data)
            if fatal:
                await _close(conn, WSCloseCode.POLICY_VIOLATION)
                return
        elif msg.type == WSMsgType.BINARY:
            state.metrics.count_in(None, len(msg.data))
            _send_error(state, conn, ProtocolError("invalid_message", "send JSON text frames"))
        elif msg.type == WSMsgType.ERROR:
            # aiohttp closes with 1009 on a frame over max_msg_size; count it, then we are done.
            state.metrics.count_error("too_large")
            return
        elif msg.type == WSMsgType.CLOSE:
            # Only a client that closes normally (1000) or goes away (1001, a page closed) left
            # for good; any other end may be a network hiccup it comes back from.
            conn.said_goodbye = msg.data in (WSCloseCode.OK, WSCloseCode.GOING_AWAY)
            return
        else:  # CLOSING, CLOSED
            return


async def _close(conn: Connection, code: int, message: bytes = b"") -> None:
    await conn.outbox.flush(FATAL_FLUSH_S)
    try:
        await asyncio.wait_for(conn.ws.close(code=code, message=message), CLOSE_TIMEOUT_S)
    except (TimeoutError, ConnectionError):
        _drop(conn)


async def _on_text(state: ServerState, conn: Connection, text: str) -> bool:
    """Handle one text frame; True when the connection must be closed."""
    size_bytes = len(text.encode("utf-8", "surrogatepass"))
    now = time.monotonic()
    if not (conn.msg_bucket.allow(now) and conn.byte_bucket.allow(now, size_bytes)):
        state.metrics.count_in(None, size_bytes)
        conn.rate_violations += 1
        fatal = conn.rate_violations >= state.config.max_rate_violations
        _send_error(state, conn, ProtocolError("rate_limited", "slow down", fatal=fatal))
        return fatal
    conn.rate_violations = 0
    try:
        message = parse_client_message(text, size_bytes, state.config.limits)
    except ProtocolError as error:
        state.metrics.count_in(None, size_bytes)
        _send_error(state, conn, error)
        return error.fatal
    state.metrics.count_in(_TYPE_NAMES[type(message)], size_bytes)
    try:
        await _dispatch(state, conn, message, now)
    except ProtocolError as error:
        _send_error(state, conn, error)
        return error.fatal
    return False


async def _dispatch(
    state: ServerState, conn: Connection, message: ClientMessage, now: float
) -> None:
    if isinstance(message, Join):
        await _on_join(state, conn, message, now)
        return
    if isinstance(message, Ping):
        _send(state, conn, {"type": "pong"})
        return
    if conn.peer_id is None:
        raise ProtocolError("not_joined", "send join first")
    peer_id = conn.peer_id
    directory = state.directory
    if isinstance(message, Signal):
        await directory.signal(peer_id, message.to, message.data)
    elif isinstance(message, GetPeers):
        candidates = await directory.candidates(peer_id, message)
        _send(state, conn, {"type": "peers", "peers": [c.to_json() for c in candidates]})
    elif isinstance(message, Status):
        await directory.status(peer_id, message)
    elif isinstance(message, Publish):
        await directory.publish(peer_id, message.media, now)
    elif isinstance(message, End):
        await directory.end(peer_id, now)


async def _on_join(state: ServerState, conn: Connection, message: Join, now: float) -> None:
    if conn.peer_id is not None:
        raise ProtocolError("already_joined", "this connection already joined a channel")
    if not await _enter_channel(state, conn, message.channel):
        cap = state.config.max_channels_per_ip
        raise ProtocolError(
            "too_many_channels",
            f"peers from your address are in too many channels (at most {cap})",
            fatal=True,
        )
    peer_id = (
        new_peer_id()
        if message.peer_secret is None
        else peer_id_for(message.channel, message.peer_secret)
    )
    # The same id on an older socket here (a reconnect before we noticed the old one drop): the
    # old socket no longer speaks for it, and the directory replaces its session quietly.
    old = state.by_peer.get(peer_id)
    if old is not None and old is not conn:
        _detach(state, old)
    try:
        count = state.config.welcome_peers
        if message.want_peers is not None:
            count = min(count, message.want_peers)
        joined = await state.directory.join(message, peer_id, now, count)
    except BaseException:
        state.ip_limits.leave(conn.address, message.channel)
        await _release_cluster_channel(state, conn)
        if old is not None:
            with contextlib.suppress(Exception):
                await state.directory.leave(peer_id, now, graceful=False)
        raise
    if old is not None and old is not conn:
        _send_error(state, old, ProtocolError("replaced", "a newer session took this id", True))
        asyncio.get_running_loop().create_task(_close(old, WSCloseCode.POLICY_VIOLATION))
    conn.peer_id = peer_id
    conn.channel = message.channel
    state.by_peer[peer_id] = conn
    state.metrics.join_seconds.observe(time.monotonic() - now)
    _send(
        state,
        conn,
        {
            "type": "welcome",
            "v": PROTOCOL_VERSION,
            "peer_id": peer_id,
            "channel": joined.channel,
            "role": message.role,
            "ice_servers": _ice_servers_for(state, conn, peer_id, state.wall_clock()),
            "media": joined.media,
            "peers": [c.to_json() for c in joined.candidates],
            "heartbeat_s": state.config.heartbeat_s,
            # The other servers of the cluster, for clients given only this one (an embedded
            # player, a `--server` typed once): they fail over to these.
            "failover_urls": list(state.config.failover_urls),
        },
    )


async def _enter_channel(state: ServerState, conn: Connection, channel: str) -> bool:
    """Count the peer against its address's channel cap: this process's first, then the
    cluster's (the same number for all processes together)."""
    limits = state.ip_limits
    if not limits.enter(conn.address, channel):
        return False
    # (A detached socket joining again gives back its old count first.)
    await _release_cluster_channel(state, conn)
    if limits.caps_channels(conn.address):
        cap = limits.max_channels_per_ip
        if not await state.directory.admit_channel(conn.address, channel, cap):
            limits.leave(conn.address, channel)
            return False
        conn.cluster_channel = channel
    return True


async def _release_cluster_channel(state: ServerState, conn: Connection) -> None:
    channel, conn.cluster_channel = conn.cluster_channel, None
    if channel is not None:
        await state.directory.release_channel(conn.address, channel)


def _detach(state: ServerState, conn: Connection) -> None:
    """The socket no longer speaks for its peer id (its close will not touch the directory)."""
    if conn.peer_id is not None and state.by_peer.get(conn.peer_id) is conn:
        del state.by_peer[conn.peer_id]
    conn.peer_id = None
    if conn.channel is not None:
        state.ip_limits.leave(conn.address, conn.channel)
        conn.channel = None


def _close_replaced(state: ServerState, peer_id: str) -> None:
    """A newer session took over (a broadcaster's same secret, or this peer id joined again on
    another process); the old socket is still open (the heartbeat has not noticed yet)."""
    old = state.by_peer.get(peer_id)
    if old is None:
        return
    _detach(state, old)
    _send_error(state, old, ProtocolError("replaced", "a newer session took over", True))
    asyncio.get_running_loop().create_task(_close(old, WSCloseCode.POLICY_VIOLATION))


async def _disconnect(state: ServerState, conn: Connection) -> None:
    state.connections.discard(conn)
    state.closed_connections += 1
    state.ip_limits.disconnect(conn.address)
    if conn.counted_in_cluster:
        conn.counted_in_cluster = False
        await state.directory.release_address(conn.address)
    await _release_cluster_channel(state, conn)
    if conn.channel is not None:
        state.ip_limits.leave(conn.address, conn.channel)
        conn.channel = None
    peer_id = conn.peer_id
    if peer_id is not None and state.by_peer.get(peer_id) is conn:
        del state.by_peer[peer_id]
        graceful = conn.said_goodbye and not state.shutting_down
        try:
            await state.directory.leave(peer_id, time.monotonic(), graceful=graceful)
        except Exception:  # Redis gone for a moment: the cluster's liveness sweep catches up
            log.exception("leave failed for %s", peer_id)
    await conn.outbox.close()
    if not conn.ws.closed:
        _drop(conn)


_TYPE_NAMES: dict[type, str] = {
    Join: "join",
    Publish: "publish",
    Signal: "signal",
    GetPeers: "get_peers",
    Status: "status",
    End: "end",
    Ping: "ping",
}


# --- embedding -------------------------------------------------------------------------------


@dataclass
class RunningServer:
    """A started server: `url` is its http base (e.g. http://127.0.0.1:43117)."""

    runner: web.AppRunner
    app: web.Application
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_server(config: ServerConfig) -> RunningServer:
    """Start the app on config.host:config.port (0 = a free port) in the running event loop."""
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=4096)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise OSError(
            error.errno, f"cannot listen on {config.host}:{config.port}: {error.strerror}"
        ) from error
    address = runner.addresses[0]
    return RunningServer(runner=runner, app=app, host=str(address[0]), port=int(address[1]))
