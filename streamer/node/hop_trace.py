"""`--hop-trace FILE`: one line per request and piece a node sends or receives, with the time.

Why: a piece's trip from a holder has three parts: its request on the way (behind the
requester's own uploads), the request in the holder's upload queue, the piece on the way (behind
the holder's other uploads, and SCTP's recovery of a loss). A node alone sees only their sum
(its response times). Nodes on one machine (the test bed's namespaces) share one clock, so their
traces put side by side split it: `streamer.netbed.hops` does that for `streamer netbed
--hop-trace`.

Line format (text, space-separated): `T me PEER_ID` when the node takes its peer id, then
`T > PEER R SEQ FIRST COUNT` for a request sent to PEER (`<` received from it) and
`T > PEER P SEQ INDEX` for a piece. T is Unix time in seconds. Other messages are not traced.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from streamer.errors import UserError
from streamer.protocol import MsgType, Piece, ProtocolError, Request, decode_message

_TRACED_TYPES = (MsgType.REQUEST, MsgType.PIECE)


def trace_line(now_s: float, outgoing: bool, peer_id: str, data: bytes) -> str | None:
    """The line for one encoded message, or None for a message that is not traced (or that is
    malformed: the core refuses those)."""
    if not data or data[0] not in _TRACED_TYPES:
        return None
    try:
        msg = decode_message(data)
    except ProtocolError:
        return None
    arrow = ">" if outgoing else "<"
    if isinstance(msg, Request):
        return f"{now_s:.4f} {arrow} {peer_id} R {msg.seq} {msg.first_index} {msg.count}\n"
    assert isinstance(msg, Piece)
    return f"{now_s:.4f} {arrow} {peer_id} P {msg.seq} {msg.index}\n"


class HopTrace:
    """Appends trace lines to a file (buffered: a node writes a few hundred a second)."""

    def __init__(self, path: str | Path) -> None:
        try:
            self._file: TextIO | None = open(path, "w", encoding="ascii")  # noqa: SIM115
        except OSError as error:
            raise UserError(f"cannot write --hop-trace {path}: {error.strerror or error}") from None

    def me(self, now_s: float, peer_id: str) -> None:
        if self._file is not None and peer_id:
            self._file.write(f"{now_s:.4f} me {peer_id}\n")

    def message(self, now_s: float, outgoing: bool, peer_id: str, data: bytes) -> None:
        if self._file is None:
            return
        line = trace_line(now_s, outgoing, peer_id, data)
        if line is not None:
            self._file.write(line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
