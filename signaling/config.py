"""Server settings in one frozen object, plus the argparse options shared by `streamer serve` and
`python -m signaling`.

Every limit that protects the server from hostile clients lives here with a unit in its name, so
tests can shrink them (a 0.2 s heartbeat, a 3-peer channel) without patching code.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signaling.client_address import Network, parse_trusted_proxy
from signaling.protocol import Limits
from signaling.turn_credentials import DEFAULT_TTL_S, make_turn_credential
from streamer.errors import UserError

#: The repository's web/ folder (templates and static files), found next to the package.
DEFAULT_WEB_DIR = Path(__file__).resolve().parent.parent / "web"

_ICE_URL_RE = re.compile(r"^(stun|stuns|turn|turns):[^\s]{1,253}$")


@dataclass(frozen=True)
class IceServer:
    """One STUN/TURN entry, shaped like RTCIceServer in the browser.

    `secret_auth`: the credentials are made per peer from the server's TURN secret
    (signaling.turn_credentials); `username`/`credential` are then unset.
    """

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None
    secret_auth: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class ServerConfig:
    """Everything the signaling server needs; defaults suit a public deployment."""

    host: str = "127.0.0.1"
    port: int = 8080
    ice_servers: tuple[IceServer, ...] = ()
    #: coturn's `static-auth-secret`: peers get credentials made from it, never the secret itself.
    turn_secret: str | None = field(default=None, repr=False)
    #: Lifetime of those credentials.
    turn_ttl_s: float = DEFAULT_TTL_S
    #: When set, creating (owning) a channel needs this operator token.
    broadcast_token: str | None = None
    #: aiohttp's hard frame limit: a bigger frame closes the socket (code 1009).
    ws_max_msg_bytes: int = 256 * 1024
    #: The message parser's size caps (signaling.protocol.Limits): our own cap for any message
    #: but `publish` (answered with a non-fatal `too_large`), the cap for `publish` (it carries
    #: the base64 init segment), the most a `get_peers` may ask for, ...
    limits: Limits = field(default_factory=Limits)
    max_peers_per_channel: int = 10_000
    #: Channels a broadcaster owns (claimed with its secret), on this server or cluster.
    max_channels: int = 1_000
    #: Channels viewers wait in before any broadcaster claimed them (they go with their last peer).
    max_waiting_channels: int = 1_000
    #: Per client address (0: no cap): open sockets, and channels its peers are in.
    max_connections_per_ip: int = 50
    max_channels_per_ip: int = 10
    #: Apply the per-address caps to loopback clients too (off: local tests and load generators
    #: run many peers from 127.0.0.1).
    limit_loopback: bool = False
    #: Reverse proxies (addresses or networks) whose X-Forwarded-For names the client; a socket
    #: from one of them is counted under that client's address (signaling.client_address).
    trusted_proxies: tuple[Network, ...] = ()
    #: Per-connection token bucket: sustained messages per second and burst size.
    rate_msgs_per_s: float = 50.0
    rate_burst_msgs: float = 200.0
    #: Per-connection byte budget (sustained and burst), counted on the raw text received.
    rate_bytes_per_s: float = 256 * 1024
    rate_burst_bytes: float = 1024 * 1024
    #: A connection refused this many messages in a row by the rate limit is dropped.
    max_rate_violations: int = 100
    #: Bounded outgoing queue per connection: a reader slower than this is dropped.
    send_queue_max_msgs: int = 512
    send_queue_max_bytes: int = 4 * 1024 * 1024
    #: aiohttp pings every heartbeat_s and drops a socket whose pong is late.
    heartbeat_s: float = 20.0
    #: Seconds a socket has to send `join` before it is closed.
    join_timeout_s: float = 30.0
    #: An owned channel's record is kept this long after its broadcaster left, so it can reclaim it
    #: (`--claim-ttl`); then the claim lapses and anyone may broadcast there.
    owner_ttl_s: float = 60.0
    sweep_interval_s: float = 5.0
    #: A cluster: redis://HOST:PORT/DB shared by every process (None: this process alone).
    redis_url: str | None = None
    #: How often a cluster process tells Redis it is alive (and flushes peers' status), and how
    #: long after its last word its peers drop out of every other process's samples.
    cluster_heartbeat_s: float = 1.0
    cluster_liveness_s: float = 3.0
    #: A peer whose socket dropped without a goodbye keeps its id this long (it may reconnect,
    #: here or on another server); then its neighbours get `peer_left` (`--peer-grace`).
    peer_grace_s: float = 5.0
    #: Signaling servers the page may fail over to (`--failover-url`; its own origin first).
    failover_urls: tuple[str, ...] = ()
    #: Candidates in `welcome`.
    welcome_peers: int = 8
    web_dir: Path = field(default=DEFAULT_WEB_DIR)
    #: Origins whose pages may embed the player and use /ws ("*": any; signaling.embedding).
    allowed_origins: tuple[str, ...] = ("*",)

    def ice_servers_json(self) -> list[dict[str, Any]]:
        """The servers anyone may see (the page): those with per-peer credentials are left out."""
        return [server.to_json() for server in self.ice_servers if not server.secret_auth]

    def ice_servers_for_peer(self, peer_id: str, now_unix_s: float) -> list[dict[str, Any]]:
        """The servers for one peer's `welcome`, with TURN credentials made for it now."""
        out = []
        for server in self.ice_servers:
            entry = server.to_json()
            if server.secret_auth and self.turn_secret:
                cred = make_turn_credential(self.turn_secret, peer_id, now_unix_s, self.turn_ttl_s)
                entry["username"] = cred.username
                entry["credential"] = cred.credential
            out.append(entry)
        return out


def parse_ice_servers(
    urls: list[str],
    username: str | None = None,
    credential: str | None = None,
    *,
    secret_auth: bool = False,
) -> tuple[IceServer, ...]:
    """Check STUN/TURN URLs (RFC 7064/7065 shapes) and attach TURN credentials to turn(s) URLs.

    With `secret_auth`, turn(s) URLs are marked for per-peer credentials instead.
    """
    if secret_auth and (username is not None or credential is not None):
        raise UserError("use either --turn-secret or --turn-username/--turn-credential, not both")
    servers: list[IceServer] = []
    for url in urls:
        if not _ICE_URL_RE.match(url):
            raise UserError(
                f"bad --turn-url/--ice-server {url!r}: "
                "expected stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp|tcp]"
            )
        if url.startswith("turn") and secret_auth:
            servers.append(IceServer((url,), secret_auth=True))
        elif url.startswith("turn"):
            servers.append(IceServer((url,), username, credential))
        else:
            servers.append(IceServer((url,)))
    if secret_auth and not any(server.secret_auth for server in servers):
        raise UserError("--turn-secret needs at least one --turn-url turn:HOST:PORT")
    return tuple(servers)


def read_turn_secret(secret: str | None, secret_file: str | None) -> str | None:
    """The TURN secret from --turn-secret or --turn-secret-file (first line); UserError if bad."""
    if secret is not None and secret_file is not None:
        raise UserError("use either --turn-secret or --turn-secret-file, not both")
    if secret_file is not None:
        try:
            text = Path(secret_file).read_text(encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot read --turn-secret-file {secret_file}: {error}") from None
        lines = text.splitlines()
        secret = lines[0].strip() if lines else ""
    if secret is not None and not secret:
        raise UserError("the TURN secret must not be empty")
    return secret


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `streamer serve` and `python -m signaling`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="TCP port (0 picks a free one)")
    add_ice_arguments(parser)
    parser.add_argument(
        "--broadcast-token",
        default=None,
        metavar="TOKEN",
        help="require this token to create a channel",
    )
    parser.add_argument(
        "--max-peers-per-channel",
        type=int,
        default=ServerConfig.max_peers_per_channel,
        metavar="N",
        help="peers of one channel on this process (default %(default)s)",
    )
    parser.add_argument(
        "--max-channels",
        type=int,
        default=ServerConfig.max_channels,
        help="channels broadcasters may own at once (default %(default)s)",
    )
    parser.add_argument(
        "--max-waiting-channels",
        type=int,
        default=ServerConfig.max_waiting_channels,
        help="channels viewers may wait in before a broadcaster claims them; they never count "
        "against --max-channels and go with their last viewer (default %(default)s)",
    )
    parser.add_argument(
        "--claim-ttl",
        type=float,
        default=ServerConfig.owner_ttl_s,
        metavar="SECONDS",
        help="how long a channel stays its broadcaster's after it left, so a restart reclaims "
        "it (default %(default).0f s)",
    )
    parser.add_argument(
        "--max-connections-per-ip",
        type=int,
        default=ServerConfig.max_connections_per_ip,
        metavar="N",
        help="open WebSockets per client address, 0 = no cap (default %(default)s; behind a "
        "reverse proxy, name it with --trusted-proxy)",
    )
    parser.add_argument(
        "--max-channels-per-ip",
        type=int,
        default=ServerConfig.max_channels_per_ip,
        metavar="N",
        help="channels the peers of one address may be in, 0 = no cap (default %(default)s)",
    )
    parser.add_argument(
        "--limit-loopback",
        action="store_true",
        help="apply the per-address caps to 127.0.0.1/::1 too (by default loopback is exempt, "
        "so local tests and load generators can run many peers)",
    )
    parser.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        dest="trusted_proxies",
        metavar="ADDRESS[/BITS]",
        help="a reverse proxy in front of this server (repeatable; an address or a network): "
        "sockets from it count under the client address its X-Forwarded-For gives",
    )
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=ServerConfig.heartbeat_s,
        metavar="SECONDS",
        help="WebSocket ping interval; a peer missing its pong is dropped (default %(default)s)",
    )
    parser.add_argument(
        "--redis",
        default=None,
        metavar="URL",
        help="run as one process of a cluster sharing channels through Redis, e.g. "
        "redis://127.0.0.1:6379/0: start any number of `serve --redis URL` (each its own "
        "--port) and spread clients over them; a channel's peers may be on any of them",
    )
    parser.add_argument(
        "--peer-grace",
        type=float,
        default=ServerConfig.peer_grace_s,
        metavar="SECONDS",
        help="a peer that drops without a goodbye keeps its id this long to reconnect (here or "
        "on another server); then its neighbours hear it left (default %(default)s)",
    )
    parser.add_argument(
        "--failover-url",
        dest="failover_urls",
        action="append",
        default=[],
        metavar="URL",
        help="another signaling server of this cluster (http(s)://HOST:PORT) the page fails "
        "over to when it loses this one (repeatable)",
    )
    parser.add_argument(
        "--allowed-origin",
        dest="allowed_origins",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a site whose pages may embed the player, e.g. https://example.org (repeatable; "
        "default: any site)",
    )


def add_ice_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The STUN/TURN options (also `streamer broadcast`'s, for its embedded server)."""
    parser.add_argument(
        "--turn-url",
        "--ice-server",
        dest="ice_server",
        action="append",
        default=[],
        metavar="URL",
        help="STUN/TURN URL handed to every peer, e.g. turn:turn.example.org:3478 or "
        "stun:stun.example.org:3478 (repeatable)",
    )
    parser.add_argument(
        "--turn-secret",
        default=None,
        metavar="SECRET",
        help="coturn's static-auth-secret: each peer gets its own expiring credentials for the "
        "turn: URLs (the secret itself is never sent)",
    )
    parser.add_argument(
        "--turn-secret-file",
        default=None,
        metavar="PATH",
        help="read the TURN secret from the first line of this file (keeps it out of ps)",
    )
    parser.add_argument(
        "--turn-ttl",
        type=float,
        default=DEFAULT_TTL_S,
        metavar="SECONDS",
        help="lifetime of those credentials (default %(default).0f s)",
    )
    parser.add_argument("--turn-username", default=None, help="static username for turn: URLs")
    parser.add_argument("--turn-credential", default=None, help="static credential for turn: URLs")


@dataclass(frozen=True)
class IceSettings:
    """What the STUN/TURN options amount to (the ServerConfig fields of the same names)."""

    ice_servers: tuple[IceServer, ...] = ()
    turn_secret: str | None = field(default=None, repr=False)
    turn_ttl_s: float = DEFAULT_TTL_S

    @property
    def configured(self) -> bool:
        return bool(self.ice_servers)


def ice_settings_from_args(args: argparse.Namespace) -> IceSettings:
    """Check the STUN/TURN options; bad values are UserErrors."""
    if not args.turn_ttl > 0:
        raise UserError("--turn-ttl must be > 0 seconds")
    turn_secret = read_turn_secret(args.turn_secret, args.turn_secret_file)
    secret_auth = turn_secret is not None
    servers = parse_ice_servers(
        args.ice_server, args.turn_username, args.turn_credential, secret_auth=secret_auth
    )
    return IceSettings(servers, turn_secret, args.turn_ttl)


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Build and check a ServerConfig from parsed options; bad values are UserErrors."""
    if not 0 <= args.port <= 65535:
        raise UserError(f"bad --port {args.port}: must be 0..65535")
    if args.max_peers_per_channel < 1 or args.max_channels < 1:
        raise UserError("--max-peers-per-channel and --max-channels must be >= 1")
    if args.heartbeat <= 0:
        raise UserError("--heartbeat must be > 0 seconds")
    if args.max_waiting_channels < 0 or args.claim_ttl < 0:
        raise UserError("--max-waiting-channels and --claim-ttl must be >= 0")
    if args.max_connections_per_ip < 0 or args.max_channels_per_ip < 0:
        raise UserError("--max-connections-per-ip and --max-channels-per-ip must be >= 0")
    if args.redis is not None and not args.redis.startswith(("redis://", "rediss://", "unix://")):
        raise UserError(f"bad --redis {args.redis!r}: expected redis://HOST:PORT/DB")
    if args.peer_grace < 0:
        raise UserError("--peer-grace must be >= 0 seconds")
    failover_urls = tuple(parse_server_url(url, "--failover-url") for url in args.failover_urls)
    if args.broadcast_token is not None and not args.broadcast_token:
        raise UserError("--broadcast-token must not be empty")
    try:
        trusted_proxies = tuple(parse_trusted_proxy(text) for text in args.trusted_proxies)
    except ValueError as error:
        raise UserError(f"bad --trusted-proxy: {error}") from None
    ice = ice_settings_from_args(args)
    allowed_origins = tuple(parse_origin(origin) for origin in args.allowed_origins) or ("*",)
    return ServerConfig(
        host=args.host,
        port=args.port,
        ice_servers=ice.ice_servers,
        turn_secret=ice.turn_secret,
        turn_ttl_s=ice.turn_ttl_s,
        broadcast_token=args.broadcast_token,
        max_peers_per_channel=args.max_peers_per_channel,
        max_channels=args.max_channels,
        max_waiting_channels=args.max_waiting_channels,
        owner_ttl_s=args.claim_ttl,
        max_connections_per_ip=args.max_connections_per_ip,
        max_channels_per_ip=args.max_channels_per_ip,
        limit_loopback=args.limit_loopback,
        trusted_proxies=trusted_proxies,
        heartbeat_s=args.heartbeat,
        allowed_origins=allowed_origins,
        redis_url=args.redis,
        peer_grace_s=args.peer_grace,
        failover_urls=failover_urls,
    )


_SERVER_URL_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]{1,260}/?$")


def parse_server_url(text: str, option: str) -> str:
    """`http(s)://HOST[:PORT]`, a signaling server's base URL (no path), without a slash."""
    if not _SERVER_URL_RE.match(text):
        raise UserError(f"bad {option} {text!r}: expected http(s)://HOST[:PORT]")
    return text.rstrip("/")


_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]{1,260}$")


def parse_origin(text: str) -> str:
    """`https://example.org[:port]` as browsers send it in Origin (no path, no trailing slash)."""
    origin = text.rstrip("/")
    if origin != "*" and not _ORIGIN_RE.match(origin):
        raise UserError(f"bad --allowed-origin {text!r}: expected https://HOST[:PORT] or *")
    return origin
