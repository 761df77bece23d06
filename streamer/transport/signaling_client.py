"""Asyncio client for the signaling server's `/ws` JSON contract (docs/signaling.md).

Why a client of its own: every peer (broadcaster, relay, watcher) needs the same join / welcome /
signal / status dance, and the same behaviour when its server goes away: reconnect to the next of
its servers (a per-client shuffled order) with capped exponential backoff and full jitter (so the
peers of a dead server do not all come back at once), join again under the same peer id (bound to
a secret only this client holds: `peer_secret`, signaling_wire.peer_id_for), re-publish the media
if this is the broadcaster, and tell the caller (`Disconnected`, then `Reconnected`) so it can
refresh what depends on the session.

Rules this module never breaks:
- A malformed message from the server is logged and skipped; it never raises into the caller.
- A fatal `error` from the server ends the session with `SignalingError(code)`: no reconnect, since
  the server said why it will not have us (wrong secret, channel full, ...).
- Sending while the socket is down does not raise: it returns False (the message is dropped; the
  caller learns about the gap from `Disconnected` / `Reconnected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from signaling_wire import PROTOCOL_VERSION, ROLES

logger = logging.getLogger(__name__)


class SignalingError(Exception):
    """The server refused us (a fatal `error`), or could not be reached / spoke nonsense.

    `code` is the server's wire code (e.g. `channel_owned`) or one of ours: `unreachable`,
    `timeout`, `bad_welcome`, `version_mismatch`, `closed`.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN server as the welcome lists it (the RTCIceServer dictionary)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class PeerRecord:
    """A candidate neighbour as the server describes it."""

    peer_id: str
    role: str
    latest_seq: int | None = None


@dataclass(frozen=True)
class Welcome:
    """The server accepted our join: our peer id for this session and what to start with."""

    peer_id: str
    channel: str
    role: str
    ice_servers: tuple[IceServer, ...]
    media: dict[str, Any] | None
    peers: tuple[PeerRecord, ...]
    heartbeat_s: float
    raw: dict[str, Any] = field(repr=False, compare=False)
    failover_urls: tuple[str, ...] = ()
    """WebSocket URLs of the cluster's other servers (at most MAX_FAILOVER_URLS)."""


@dataclass(frozen=True)
class MediaUpdate:
    """The broadcaster published (or re-published after a restart) its media description."""

    media: dict[str, Any]


@dataclass(frozen=True)
class PeersUpdate:
    """Candidate neighbours, usually the answer to `get_peers`."""

    peers: tuple[PeerRecord, ...]


@dataclass(frozen=True)
class SignalMessage:
    """An opaque peer-to-peer payload (offer, answer, candidate) relayed by the server."""

    from_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class PeerLeft:
    """A peer we were talking to left the server."""

    peer_id: str


@dataclass(frozen=True)
class BroadcastEnded:
    """The broadcast is over (`ended`) or its broadcaster vanished (`broadcaster_left`)."""

    reason: str


@dataclass(frozen=True)
class ServerError:
    """A non-fatal `error` from the server (rate_limited, unknown_peer, ...): the session lives."""

    code: str
    message: str
    fatal: bool = False


@dataclass(frozen=True)
class Disconnected:
    """The socket to the server dropped; the client retries in `retry_in_s` seconds."""

    reason: str
    retry_in_s: float


@dataclass(frozen=True)
class Reconnected:
    """Joined again after a drop, maybe on another server. The peer id is the same (servers
    that know `peer_secret`); `id_changed` says when it is not (a server without it)."""

    welcome: Welcome
    id_changed: bool = False


@dataclass(frozen=True)
class IceServersUpdate:
    """Fresh ICE servers (new TURN credentials before the old ones expire): use them from now on."""

    ice_servers: tuple[IceServer, ...]


@dataclass(frozen=True)
class OtherMessage:
    """A message type this client does not know (the contract may grow); passed on untouched."""

    type: str
    raw: dict[str, Any]


SignalingEvent = (
    MediaUpdate
    | PeersUpdate
    | SignalMessage
    | PeerLeft
    | BroadcastEnded
    | ServerError
    | Disconnected
    | Reconnected
    | IceServersUpdate
    | OtherMessage
)


class _MalformedMessage(ValueError):
    """A server message whose fields have the wrong types (logged and skipped)."""


#: Errors after which another server (or the same one later) may well take us.
_RETRYABLE = ("unreachable", "timeout", "unavailable")


def backoff_delay_s(
    attempt: int, rng: random.Random, initial_s: float = 0.25, max_s: float = 5.0
) -> float:
    """Wait before reconnect attempt `attempt` (0-based): full jitter, uniform in [0, cap) with
    the cap doubling from `initial_s` up to `max_s`, so peers that lost one server together
    spread their rejoins instead of arriving as one herd."""
    cap_s = min(max_s, initial_s * 2 ** max(0, min(attempt, 30)))
    return rng.uniform(0.0, cap_s)


def server_order(urls: Sequence[str], rng: random.Random) -> list[str]:
    """The order one client tries its servers in: shuffled per client (spreads the load), each
    once; duplicates dropped."""
    unique = list(dict.fromkeys(urls))
    rng.shuffle(unique)
    return unique


def websocket_url(base_url: str) -> str:
    """Map the server's http(s) base URL (what users type) to its WebSocket endpoint."""
    url = base_url.strip().rstrip("/")
    if url.startswith("http://"):
        url = "ws://" + url[len("http://") :]
    elif url.startswith("https://"):
        url = "wss://" + url[len("https://") :]
    elif not url.startswith(("ws://", "wss://")):
        raise ValueError(f"signaling URL must start with http:// or https://, not {base_url!r}")
    if not url.endswith("/ws"):
        url += "/ws"
    return url


def _require_str(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise _MalformedMessage(f"{key!r} must be a string")
    return value


def _optional_int(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _MalformedMessage(f"{key!r} must be an integer or null")
    return value


def _optional_media(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    media = obj.get("media")
    if media is not None and not isinstance(media, dict):
        raise _MalformedMessage("'media' must be an object or null")
    return media


def parse_peer_records(value: Any) -> tuple[PeerRecord, ...]:
    """Validate a PEER list; raises _MalformedMessage (a ValueError) when it is not one."""
    if not isinstance(value, list):
        raise _MalformedMessage("'peers' must be a list")
    records = []
    for item in value:
        if not isinstance(item, dict):
            raise _MalformedMessage("each peer must be an object")
        records.append(
            PeerRecord(
                peer_id=_require_str(item, "peer_id"),
                role=_require_str(item, "role"),
                latest_seq=_optional_int(item, "latest_seq"),
            )
        )
    return tuple(records)


def parse_ice_servers(value: Any) -> tuple[IceServer, ...]:
    """Validate the welcome's `ice_servers` (urls may be one string or a list, as in WebRTC)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _MalformedMessage("'ice_servers' must be a list")
    servers = []
    for item in value:
        if not isinstance(item, dict):
            raise _MalformedMessage("each ICE server must be an object")
        urls = item.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise _MalformedMessage("ICE server 'urls' must be a string or a list of strings")
        username = item.get("username")
        credential = item.get("credential")
        if username is not None and not isinstance(username, str):
            raise _MalformedMessage("ICE server 'username' must be a string")
        if credential is not None and not isinstance(credential, str):
            raise _MalformedMessage("ICE server 'credential' must be a string")
        servers.append(IceServer(urls=tuple(urls), username=username, credential=credential))
    return tuple(servers)


MAX_FAILOVER_URLS = 8


def parse_failover_urls(value: Any) -> tuple[str, ...]:
    """The welcome's `failover_urls` (http(s) base URLs) as WebSocket URLs; anything else in the
    list is left out, and at most MAX_FAILOVER_URLS are kept."""
    if not isinstance(value, list):
        return ()
    urls: list[str] = []
    for item in value[:MAX_FAILOVER_URLS]:
        if isinstance(item, str) and item.startswith(("http://", "https://")):
            urls.append(websocket_url(item))
    return tuple(urls)


def parse_welcome(obj: Mapping[str, Any]) -> Welcome:
    """Validate a `welcome`; raises SignalingError(bad_welcome / version_mismatch)."""
    if obj.get("v") != PROTOCOL_VERSION:
        raise SignalingError(
            "version_mismatch", f"server speaks version {obj.get('v')!r}, we speak 1"
        )
    try:
        heartbeat_s = obj.get("heartbeat_s", 20.0)
        if isinstance(heartbeat_s, bool) or not isinstance(heartbeat_s, int | float):
            raise _MalformedMessage("'heartbeat_s' must be a number")
        return Welcome(
            peer_id=_require_str(obj, "peer_id"),
            channel=_require_str(obj, "channel"),
            role=_require_str(obj, "role"),
            ice_servers=parse_ice_servers(obj.get("ice_servers")),
            media=_optional_media(obj),
            peers=parse_peer_records(obj.get("peers", [])),
            heartbeat_s=float(heartbeat_s),
            raw=dict(obj),
            failover_urls=parse_failover_urls(obj.get("failover_urls")),
        )
    except _MalformedMessage as error:
        raise SignalingError("bad_welcome", str(error)) from None


def parse_server_message(obj: Mapping[str, Any]) -> SignalingEvent | None:
    """Turn one decoded server message (not the welcome) into an event.

    Returns None for messages that carry nothing for the caller; raises _MalformedMessage.
    """
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise _MalformedMessage("message without a string 'type'")
    if kind == "signal":
        data = obj.get("data")
        if not isinstance(data, dict):
            raise _MalformedMessage("signal 'data' must be an object")
        return SignalMessage(from_id=_require_str(obj, "from"), data=data)
    if kind == "peers":
        return PeersUpdate(peers=parse_peer_records(obj.get("peers")))
    if kind == "media":
        media = _optional_media(obj)
        if media is None:
            raise _MalformedMessage("'media' message without media")
        return MediaUpdate(media=media)
    if kind == "peer_left":
        return PeerLeft(peer_id=_require_str(obj, "peer_id"))
    if kind == "broadcast_ended":
        return BroadcastEnded(reason=_require_str(obj, "reason"))
    if kind == "ice_servers":
        return IceServersUpdate(ice_servers=parse_ice_servers(obj.get("ice_servers")))
    if kind == "error":
        return ServerError(
            code=_require_str(obj, "code"),
            message=str(obj.get("message", "")),
            fatal=obj.get("fatal") is True,
        )
    if kind in ("pong", "welcome"):
        return None
    return OtherMessage(type=kind, raw=dict(obj))


class SignalingClient:
    """One peer's session with the signaling server, kept alive across server restarts.

    Usage::

        client = SignalingClient("http://127.0.0.1:8080", channel="demo", role="relay")
        welcome = await client.connect()          # SignalingError if refused
        async for event in client.events():       # until close(); SignalingError if fatal
            ...
        await client.close()
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        channel: str,
        role: str,
        secret: str | None = None,
        token: str | None = None,
        reconnect: bool = True,
        connect_timeout_s: float = 10.0,
        backoff_initial_s: float = 0.25,
        backoff_max_s: float = 5.0,
        heartbeat_s: float | None = 20.0,
        max_message_bytes: int = 1024 * 1024,
        rng: random.Random | None = None,
    ) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        if role == "broadcaster" and not secret:
            raise ValueError("a broadcaster needs a secret")
        self._rng = rng or random.Random()
        given = [url] if isinstance(url, str) else list(url)
        if not given:
            raise ValueError("at least one signaling server URL is needed")
        #: The servers in this client's order; `url` is the one in use (or tried next).
        self.urls = server_order([websocket_url(u) for u in given], self._rng)
        self._url_index = 0
        self.url = self.urls[0]
        #: Sent to servers only, never to peers: our peer id is derived from it, so we keep the
        #: id on every server and nobody else can take it.
        self.peer_secret = secrets.token_urlsafe(24)
        self.channel = channel
        self.role = role
        self._secret = secret
        self._token = token
        self._reconnect = reconnect
        self._connect_timeout_s = connect_timeout_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._heartbeat_s = heartbeat_s
        self._max_message_bytes = max_message_bytes
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._events: asyncio.Queue[SignalingEvent | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: SignalingError | None = None
        self._published_media: dict[str, Any] | None = None
        self.welcome: Welcome | None = None
        #: How many times the session was re-established after a drop.
        self.reconnects = 0

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def peer_id(self) -> str | None:
        """Our id in the current session (changes after a reconnect), None before the welcome."""
        return self.welcome.peer_id if self.welcome else None

    @property
    def connected(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> Welcome:
        """Open the socket, join, and return the welcome; then keep the session in the background.

        Raises SignalingError: the server's code when it refuses the join, `unreachable` or
        `timeout` when none of the servers can be reached (each is tried once, no backoff: the
        user typed the URLs and wants to know now).
        """
        if self._task is not None:
            raise RuntimeError("connect() called twice")
        self._session = aiohttp.ClientSession()
        try:
            self._ws, self.welcome = await self._join_first_reachable()
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._task = asyncio.create_task(self._run(), name=f"signaling-{self.channel}")
        return self.welcome

    async def close(self) -> None:
        """Leave: close the socket, stop reconnecting, end `events()`."""
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._events.put_nowait(None)

    async def __aenter__(self) -> SignalingClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def events(self) -> AsyncIterator[SignalingEvent]:
        """Server events in arrival order. Ends after close(); raises SignalingError if fatal."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)  # let other iterators end too
                if self._failure is not None:
                    raise self._failure
                return
            yield event

    async def next_event(self, timeout_s: float | None = None) -> SignalingEvent:
        """The next event (handy in tests and simple loops). Raises SignalingError when over."""
        event = await asyncio.wait_for(self._events.get(), timeout_s)
        if event is None:
            self._events.put_nowait(None)
            raise self._failure or SignalingError("closed", "the signaling session is closed")
        return event

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, message: Mapping[str, Any]) -> bool:
        """Send one JSON message; False when the socket is down (the message is dropped)."""
        ws = self._ws
        if ws is None or ws.closed:
            return False
        try:
            await ws.send_str(json.dumps(message, separators=(",", ":")))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as error:
            logger.debug("signaling send failed: %s", error)
            return False
        return True

    async def signal(self, to: str, data: Mapping[str, Any]) -> bool:
        """Relay an opaque object to a peer of our channel (offers, answers, candidates)."""
        return await self.send({"type": "signal", "to": to, "data": dict(data)})

    async def get_peers(self, count: int, exclude: Sequence[str] = ()) -> bool:
        """Ask for up to `count` candidate neighbours; the answer arrives as `PeersUpdate`."""
        return await self.send({"type": "get_peers", "count": count, "exclude": list(exclude)})

    async def status(
        self,
        *,
        neighbours: Sequence[str],
        upload_bps: int,
        spare_upload_bps: int | None = None,
        latest_seq: int | None = None,
        stats: Mapping[str, float] | None = None,
    ) -> bool:
        """Report our state to the tracker (call at most once per second)."""
        return await self.send(
            {
                "type": "status",
                "neighbours": list(neighbours),
                "upload_bps": int(upload_bps),
                "spare_upload_bps": spare_upload_bps,
                "latest_seq": latest_seq,
                "stats": dict(stats or {}),
            }
        )

    async def publish(self, media: Mapping[str, Any]) -> bool:
        """Broadcaster only: describe the stream. Remembered and re-sent after a reconnect."""
        self._published_media = dict(media)
        return await self.send({"type": "publish", "media": self._published_media})

    async def end(self) -> bool:
        """Broadcaster only: the broadcast is over (no re-publish after a reconnect either)."""
        self._published_media = None
        return await self.send({"type": "end"})

    # -- internals -------------------------------------------------------------------------------

    def _join_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "join",
            "v": PROTOCOL_VERSION,
            "channel": self.channel,
            "role": self.role,
        }
        if self._secret is not None:
            message["secret"] = self._secret
        if self._token is not None:
            message["token"] = self._token
        message["peer_secret"] = self.peer_secret
        if self.welcome is not None:
            # A rejoin: our links are still open, and we ask get_peers when we want more. A
            # server whose neighbour died takes thousands of rejoins at once; none costs a
            # sample of the channel.
            message["want_peers"] = 0
        return message

    async def _join_first_reachable(self) -> tuple[aiohttp.ClientWebSocketResponse, Welcome]:
        """Each server once, in our order, until one takes us."""
        error: SignalingError | None = None
        for _ in self.urls:
            try:
                return await self._open_and_join()
            except SignalingError as failed:
                if failed.code not in _RETRYABLE:
                    raise
                error = failed
                self._next_server()
        assert error is not None
        raise error

    def _next_server(self) -> None:
        self._url_index = (self._url_index + 1) % len(self.urls)
        self.url = self.urls[self._url_index]

    async def _open_and_join(self) -> tuple[aiohttp.ClientWebSocketResponse, Welcome]:
        assert self._session is not None
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                ws = await self._session.ws_connect(
                    self.url,
                    heartbeat=self._heartbeat_s,
                    max_msg_size=self._max_message_bytes,
                )
        except TimeoutError:
            raise SignalingError("timeout", f"no answer from {self.url}") from None
        except (aiohttp.ClientError, OSError) as error:
            raise SignalingError("unreachable", f"cannot reach {self.url}: {error}") from None
        try:
            await ws.send_str(json.dumps(self._join_message()))
            async with asyncio.timeout(self._connect_timeout_s):
                welcome = await self._await_welcome(ws)
        except TimeoutError:
            await ws.close()
            raise SignalingError("timeout", "no welcome from the server") from None
        except SignalingError:
            await ws.close()
            raise
        except (aiohttp.ClientError, ConnectionError) as error:
            await ws.close()
            raise SignalingError("unreachable", f"lost {self.url}: {error}") from None
        return ws, welcome

    async def _await_welcome(self, ws: aiohttp.ClientWebSocketResponse) -> Welcome:
        """Read until the welcome; any `error` before it means the join was refused."""
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise SignalingError("unreachable", "the server closed the socket during join")
            try:
                obj = json.loads(msg.data)
            except ValueError:
                raise SignalingError("bad_welcome", "the server sent invalid JSON") from None
            if not isinstance(obj, dict):
                continue
            if obj.get("type") == "welcome":
                welcome = parse_welcome(obj)
                self._learn_servers(welcome.failover_urls)
                return welcome
            if obj.get("type") == "error":
                raise SignalingError(str(obj.get("code")), str(obj.get("message", "")))

    def _learn_servers(self, urls: Sequence[str]) -> None:
        """Servers a welcome named: tried after ours, in this client's order, on a drop."""
        fresh = [u for u in urls if u not in self.urls]
        self.urls.extend(server_order(fresh, self._rng))

    async def _run(self) -> None:
        """Read the socket; on a drop, rejoin with exponential backoff until close()."""
        try:
            while not self._closing:
                assert self._ws is not None
                reason = await self._read_loop(self._ws)
                if self._closing or self._failure is not None:
                    break
                if not self._reconnect:
                    self._failure = SignalingError("closed", f"lost the server: {reason}")
                    break
                await self._rejoin(reason)
        except SignalingError as error:
            self._failure = error
        finally:
            self._events.put_nowait(None)

    async def _read_loop(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        """Dispatch messages until the socket closes; returns why it closed."""
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type == aiohttp.WSMsgType.ERROR:
                    return f"socket error: {ws.exception()}"
                continue
            try:
                obj = json.loads(msg.data)
                if not isinstance(obj, dict):
                    raise _MalformedMessage("message is not a JSON object")
                event = parse_server_message(obj)
            except ValueError as error:  # includes _MalformedMessage and JSON errors
                logger.warning("ignoring a malformed signaling message: %s", error)
                continue
            if isinstance(event, ServerError) and event.fatal:
                self._failure = SignalingError(event.code, event.message)
                self._events.put_nowait(event)
                await ws.close()
                return f"fatal error {event.code}"
            if event is not None:
                self._events.put_nowait(event)
        return f"socket closed (code {ws.close_code})"

    async def _rejoin(self, reason: str) -> None:
        """Next server first (the one we lost is likely down), then round the list, backing
        off between attempts."""
        old_id = self.peer_id
        attempt = 0
        while not self._closing:
            self._next_server()
            delay_s = backoff_delay_s(
                attempt, self._rng, self._backoff_initial_s, self._backoff_max_s
            )
            self._events.put_nowait(Disconnected(reason=reason, retry_in_s=delay_s))
            logger.info("signaling lost (%s); trying %s in %.2f s", reason, self.url, delay_s)
            await asyncio.sleep(delay_s)
            try:
                self._ws, self.welcome = await self._open_and_join()
            except SignalingError as error:
                if error.code not in _RETRYABLE:
                    raise  # the server answered and refused us: retrying will not help
                reason = error.message
                attempt += 1
                continue
            self.reconnects += 1
            if self._published_media is not None:
                await self.send({"type": "publish", "media": self._published_media})
            changed = old_id is not None and self.welcome.peer_id != old_id
            self._events.put_nowait(Reconnected(welcome=self.welcome, id_changed=changed))
            return
