"""Wait for an encoder to push (RTMP listen mode), one at a time, again after each disconnect.

FFmpeg accepts one connection per `avformat_open_input` in listen mode and stops listening after
it, so each push is a new open. Blocking waits run in the media worker thread (PyAV releases the
GIL while FFmpeg waits); `interrupt()` from any thread ends a wait: it sets a flag and connects to
the port once, which makes FFmpeg's handshake fail and the open return.

Rules: a push that fails (garbage, wrong key, vanishing mid-handshake) is one warning and the next
push is awaited; only a port that cannot be listened on is an error.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from typing import Any

import av
import av.error
import av.logging

from streamer.media.errors import MediaError
from streamer.media.inputs import media_error
from streamer.media.listen import ListenSpec, wrong_key_in_logs

log = logging.getLogger(__name__)

FATAL_ERRNOS = {errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL, errno.EPERM}
# FFmpeg gives up on a connected encoder that sends nothing for this long (handshake included).
IDLE_TIMEOUT_S = 10.0


class ListenInterrupted(MediaError):
    """`interrupt()` was called while waiting for a push."""


class PushListener:
    """Hands out one opened input container per encoder push (`accept`)."""

    def __init__(self, spec: ListenSpec, read_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self.spec = spec
        self.read_timeout_s = read_timeout_s
        self.pushes = 0  # accepted pushes so far
        self.rejected = 0
        self.connected = False
        self._stop = threading.Event()
        self._waiting = threading.Event()

    @property
    def interrupted(self) -> bool:
        return self._stop.is_set()

    def accept(self) -> Any:
        """Block until an encoder pushes with the right key; its `InputContainer`, opened."""
        while True:
            if self._stop.is_set():
                raise ListenInterrupted("stopped while waiting for an encoder")
            container = self._open_once()
            if container is not None:
                self.pushes += 1
                self.connected = True
                return container

    def _open_once(self) -> Any | None:
        options = dict(self.spec.options)
        # FFmpeg's own I/O timeout (microseconds): a connected encoder that stalls, even inside
        # the handshake, fails the open instead of holding the port forever.
        options["rw_timeout"] = str(int(self.read_timeout_s * 1_000_000))
        previous_level = av.logging.get_level()
        if previous_level is None or previous_level < av.logging.WARNING:
            av.logging.set_level(av.logging.WARNING)  # so the stream-key warning can be captured
        self._waiting.set()
        try:
            with av.logging.Capture(local=True) as logs:
                try:
                    container = av.open(
                        self.spec.ffmpeg_url,
                        mode="r",
                        format=self.spec.format,
                        options=options,
                        timeout=(None, self.read_timeout_s),
                    )
                except Exception as error:
                    self._failed(error)
                    return None
        finally:
            self._waiting.clear()
        if self._stop.is_set():
            container.close()
            raise ListenInterrupted("stopped while waiting for an encoder")
        wrong = wrong_key_in_logs(logs, self.spec.key)
        if wrong is not None:
            container.close()
            self.rejected += 1
            log.warning(
                "%s: refused a push with a wrong stream key (%r)", self.spec.display_url, wrong
            )
            return None
        if not container.streams.video and not container.streams.audio:
            container.close()
            log.warning("%s: a push with no audio or video was dropped", self.spec.display_url)
            return None
        return container

    def _failed(self, error: BaseException) -> None:
        if self._stop.is_set():
            raise ListenInterrupted("stopped while waiting for an encoder") from None
        code = getattr(error, "errno", None)
        if code in FATAL_ERRNOS:
            reason = getattr(error, "strerror", None) or str(error)
            raise MediaError(f"cannot listen on {self.spec.display_url}: {reason}") from None
        message = media_error(error, self.spec.display_url, "receive a push on")
        log.warning("%s; waiting for the next push", message)
        time.sleep(0.05)  # a client that fails at once must not spin this loop
        return None

    def disconnected(self) -> None:
        self.connected = False

    def interrupt(self) -> None:
        """End a wait in `accept` (any thread, never blocks); later `accept` calls raise."""
        self._stop.set()
        if self._waiting.is_set():
            threading.Thread(target=self._poke, name="listen-interrupt", daemon=True).start()

    def _poke(self, give_up_s: float = 5.0) -> None:
        """Connect and hang up until the open returns (FFmpeg may not be listening yet)."""
        host = "127.0.0.1" if self.spec.host in ("0.0.0.0", "") else self.spec.host
        if host == "::":
            host = "::1"
        deadline = time.monotonic() + give_up_s
        while self._waiting.is_set() and time.monotonic() < deadline:
            try:
                with socket.create_connection((host, self.spec.port), timeout=1.0):
                    pass  # connected and closed: FFmpeg's handshake fails, the open returns
            except OSError:
                pass
            time.sleep(0.1)
