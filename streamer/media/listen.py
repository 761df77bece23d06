"""Push ingest addresses: what `--listen URL` means, which schemes this FFmpeg can serve. Pure,
except `input_protocols` (asks the FFmpeg that PyAV carries, once).

An encoder (OBS, an IP encoder box) pushes to a server: `rtmp://HOST:PORT/APP` plus a stream key.
FFmpeg's RTMP protocol has a listen mode that plays that server for one encoder at a time; we
re-open it after each disconnect. SRT works the same way when FFmpeg was built with libsrt. FFmpeg
has WHIP only as a sender (a muxer), so WHIP ingest is reported as unavailable.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from streamer.media.errors import MediaError

DEFAULT_PORTS = {"rtmp": 1935, "srt": 9000}
_KEY_RE = re.compile(r"^[A-Za-z0-9_.~-]{1,128}$")
_APP_RE = re.compile(r"^[A-Za-z0-9_.~-]{1,64}$")
# FFmpeg's RTMP server logs this (and carries on) when the pushed stream key is not the expected.
_WRONG_KEY_RE = re.compile(r"Unexpected stream (\S*), expecting (\S*)")


@dataclass(frozen=True)
class ListenScheme:
    """How FFmpeg serves one push protocol."""

    name: str
    protocol: str  # the FFmpeg protocol needed
    demuxer: str  # the container the encoder sends
    options: tuple[tuple[str, str], ...]
    note: str


SCHEMES = {
    "rtmp": ListenScheme(
        "rtmp", "rtmp", "flv", (("listen", "1"), ("analyzeduration", "1000000")), "OBS (FLV)"
    ),
    "srt": ListenScheme("srt", "srt", "mpegts", (("mode", "listener"),), "MPEG-TS over SRT"),
    "whip": ListenScheme("whip", "whip", "whip", (), "WebRTC (WHIP)"),
}


@dataclass(frozen=True)
class ListenSpec:
    """Where to wait for a push, and the stream key it must carry."""

    scheme: str
    host: str
    port: int
    app: str
    key: str
    key_generated: bool = False

    @property
    def ffmpeg_url(self) -> str:
        if self.scheme == "srt":
            return f"srt://{self.host}:{self.port}?streamid={self.key}"
        return f"rtmp://{self.host}:{self.port}/{self.app}/{self.key}"

    @property
    def display_url(self) -> str:
        """The listen address without the key (for logs: the key is a secret)."""
        if self.scheme == "srt":
            return f"srt://{self.host}:{self.port}"
        return f"rtmp://{self.host}:{self.port}/{self.app}"

    def server_url(self, public_host: str) -> str:
        """What goes into the encoder's "Server" field."""
        host = self.host if self.host not in ("0.0.0.0", "::", "") else public_host
        if self.scheme == "srt":
            return f"srt://{host}:{self.port}?streamid={self.key}"
        return f"rtmp://{host}:{self.port}/{self.app}"

    @property
    def format(self) -> str:
        return SCHEMES[self.scheme].demuxer

    @property
    def options(self) -> dict[str, str]:
        return dict(SCHEMES[self.scheme].options)


def new_stream_key() -> str:
    """A random stream key: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def parse_listen_url(
    url: str,
    key: str | None = None,
    available: Iterable[str] | None = None,
    make_key: Callable[[], str] = new_stream_key,
) -> ListenSpec:
    """`rtmp://0.0.0.0:1935/live` (or `.../live/KEY`) -> ListenSpec; MediaError if unusable.

    `key` (from `--stream-key`) wins over one in the URL; with neither, one is generated.
    `available`: the schemes this FFmpeg serves (default: asked at run time).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise MediaError(f"--listen: unknown scheme in {url!r} (use rtmp://HOST:PORT/APP)")
    usable = set(available_listen_schemes() if available is None else available)
    if scheme not in usable:
        have = ", ".join(sorted(usable)) or "none"
        raise MediaError(
            f"--listen: this FFmpeg cannot receive {scheme}:// pushes ({listen_support_note()}); "
            f"available: {have}"
        )
    host = parts.hostname or "0.0.0.0"
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        raise MediaError(f"--listen: bad port in {url!r}") from None
    if not 1 <= port <= 65535:
        raise MediaError(f"--listen: port must be 1-65535 in {url!r}")
    if parts.username or parts.password:
        raise MediaError("--listen: no user or password in the URL; the stream key guards it")
    segments = [s for s in parts.path.split("/") if s]
    app = segments[0] if segments else "live"
    url_key = "/".join(segments[1:]) or None
    if not _APP_RE.match(app):
        raise MediaError(f"--listen: bad application name {app!r} (letters, digits, - _ . ~)")
    chosen = key or url_key
    generated = chosen is None
    if chosen is None:
        chosen = make_key()
    if not _KEY_RE.match(chosen):
        raise MediaError("stream key: 1-128 letters, digits or - _ . ~")
    return ListenSpec(scheme, host, port, app, chosen, key_generated=generated)


def wrong_key_in_logs(logs: Iterable[tuple[int, str, str]], key: str) -> str | None:
    """The key an encoder pushed, if FFmpeg's logs say it was not `key` (None: it was right)."""
    for _level, _name, message in logs:
        match = _WRONG_KEY_RE.search(message)
        if match and match.group(1) != key:
            return match.group(1)
    return None


def available_listen_schemes(protocols: Iterable[str] | None = None) -> list[str]:
    """Schemes `--listen` can serve with this FFmpeg (protocol and demuxer both present)."""
    import av

    have = set(input_protocols() if protocols is None else protocols)
    if not have:
        have = {"rtmp"}  # FFmpeg could not be asked; every PyAV build has RTMP
    found = []
    for name, scheme in SCHEMES.items():
        demuxer_ok = _is_demuxer(av, scheme.demuxer)
        if scheme.protocol in have and demuxer_ok:
            found.append(name)
    return found


def listen_support_note(protocols: Iterable[str] | None = None) -> str:
    """One line for --help: which push protocols this installation can receive."""
    usable = set(available_listen_schemes(protocols))
    words = []
    for name in SCHEMES:
        state = "yes" if name in usable else "no"
        if name == "whip" and name not in usable:
            state = "no (FFmpeg only sends WHIP)"
        elif name == "srt" and name not in usable:
            state = "no (FFmpeg built without libsrt)"
        words.append(f"{name} {state}")
    return "; ".join(words)


def _is_demuxer(av: object, name: str) -> bool:
    try:
        from av.format import ContainerFormat

        return bool(ContainerFormat(name).is_input)
    except Exception:
        return False


@functools.cache
def input_protocols() -> frozenset[str]:
    """FFmpeg's input protocols, from the libavformat inside PyAV (empty if it cannot be asked)."""
    try:
        import av

        base = os.path.dirname(os.path.dirname(av.__file__))
        candidates = glob.glob(os.path.join(base, "av.libs", "libavformat*.so*"))
        lib = ctypes.CDLL(candidates[0]) if candidates else ctypes.CDLL("libavformat.so")
        enum = lib.avio_enum_protocols
        enum.restype = ctypes.c_char_p
        enum.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
        opaque = ctypes.c_void_p(None)
        names: set[str] = set()
        while True:
            name = enum(ctypes.byref(opaque), 0)
            if not name:
                break
            names.add(name.decode())
        return frozenset(names)
    except (OSError, AttributeError, IndexError):
        return frozenset()
