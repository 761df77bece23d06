"""Open any input FFmpeg can read, with timeouts for live sources and errors a user can act on.

Accepted inputs: a file path; a V4L2 camera (`/dev/video0`); a URL FFmpeg has a protocol for
(rtsp, rtmp, srt, http(s), udp, tcp, ...); `testsrc` (or `testsrc:WIDTHxHEIGHT@FPS`), a synthetic
pattern with a frame counter and a tone, for demos without a file.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Any

import av
import av.error

from streamer.media.errors import MediaError

_REAL_TIME_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp"}
_URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_TESTSRC_RE = re.compile(r"^testsrc(?::(\d+)x(\d+)(?:@(\d+(?:\.\d+)?))?)?$")


@dataclass(frozen=True)
class InputSpec:
    """How to ask FFmpeg for an input: the name it opens, a forced format, demuxer options."""

    url: str
    display_name: str
    format: str | None
    options: dict[str, str]
    is_live: bool  # no end, cannot be looped or re-opened at the start
    # The source itself delivers media at real time (camera, RTSP/RTMP/SRT/UDP, a push): chunks go
    # out as soon as they are whole. Others (files, testsrc, HTTP) are paced on the wall clock.
    paced_by_source: bool = False


def resolve_input(name: str) -> InputSpec:
    """Classify an input name. Pure: touches the file system only to tell files from devices."""
    if not name or not name.strip():
        raise MediaError("no input given")
    match = _TESTSRC_RE.match(name)
    if match:
        width = int(match.group(1) or 640)
        height = int(match.group(2) or 360)
        fps = match.group(3) or "30"
        if not (16 <= width <= 7680 and 16 <= height <= 4320):
            raise MediaError(f"testsrc size {width}x{height} is out of range")
        graph = (
            f"testsrc2=size={width}x{height}:rate={fps}[out0];"
            "sine=frequency=440:beep_factor=4:sample_rate=48000[out1]"
        )
        return InputSpec(graph, "testsrc", "lavfi", {}, is_live=True)
    if name.startswith("/dev/video"):
        return InputSpec(name, name, "video4linux2,v4l2", {}, is_live=True, paced_by_source=True)
    if _URL_RE.match(name):
        scheme = name.split("://", 1)[0].lower()
        if scheme == "file":
            return InputSpec(name[len("file://") :], name, None, {}, is_live=False)
        options: dict[str, str] = {}
        if scheme == "rtsp":
            options["rtsp_transport"] = "tcp"  # UDP loses packets behind NAT; TCP just works
        if scheme in ("http", "https"):
            options["reconnect"] = "0"
        paced = scheme in _REAL_TIME_SCHEMES
        return InputSpec(name, _redact(name), None, options, is_live=True, paced_by_source=paced)
    return InputSpec(name, name, None, {}, is_live=False)


def _redact(url: str) -> str:
    """Hide credentials (`rtsp://user:pass@host`) from messages."""
    return re.sub(r"://[^/@]*@", "://***@", url)


def open_input(spec: InputSpec, open_timeout_s: float, read_timeout_s: float) -> Any:
    """An `av.container.InputContainer`; every failure becomes a one-line MediaError."""
    if not spec.is_live and spec.format is None:
        if not os.path.exists(spec.url):
            raise MediaError(f"input file not found: {spec.display_name}")
        if os.path.isdir(spec.url):
            raise MediaError(f"input is a directory, not a media file: {spec.display_name}")
        if os.path.getsize(spec.url) == 0:
            raise MediaError(f"input file is empty: {spec.display_name}")
    try:
        return av.open(
            spec.url,
            mode="r",
            format=spec.format,
            options=spec.options,
            timeout=(open_timeout_s, read_timeout_s),
        )
    except Exception as error:
        raise media_error(error, spec.display_name, "open") from error


def media_error(error: BaseException, name: str, action: str) -> MediaError:
    """Word an FFmpeg failure for the user: what went wrong, with which input."""
    if isinstance(error, MediaError):
        return error
    if isinstance(error, av.error.ExitError):  # FFmpeg's interrupt callback: our timeout fired
        return MediaError(f"timed out trying to {action} {name} (source stalled or unreachable)")
    if isinstance(error, av.error.InvalidDataError):
        return MediaError(
            f"cannot {action} {name}: not media FFmpeg can read (truncated, corrupt or unsupported)"
        )
    if isinstance(error, av.error.FFmpegError):
        reason = getattr(error, "strerror", None) or str(error)
        if getattr(error, "errno", None) == errno.EIO:
            reason += " (connection lost or source ended abruptly)"
        return MediaError(f"cannot {action} {name}: {reason}")
    if isinstance(error, FileNotFoundError):
        return MediaError(f"input not found: {name}")
    if isinstance(error, PermissionError):
        return MediaError(f"permission denied: {name}")
    if isinstance(error, OSError):
        return MediaError(f"cannot {action} {name}: {error.strerror or error}")
    return MediaError(f"cannot {action} {name}: {type(error).__name__}: {error}")
