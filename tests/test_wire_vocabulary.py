"""The browser's copies of the two wire vocabularies agree with the Python declarations.

The page is a full peer: it joins the signaling server (web/static/js/signaling.js, declared in
Python by signaling_wire) and speaks the peer wire protocol (web/static/js/wire.js, declared by
streamer.protocol). Node imports the real modules and prints their constants, so what is compared
is what the browser runs, not a pattern matched in its source.
"""

from __future__ import annotations

import enum
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from required_tools import required_program

import signaling_wire
from signaling import protocol as signaling_protocol
from streamer.protocol import chunk_header, messages
from streamer.transport import signaling_client
from streamer.transport.rtc import RtcConfig

ROOT = Path(__file__).resolve().parent.parent

_DUMP_JS = """
import * as signaling from "./web/static/js/signaling.js";
import * as wire from "./web/static/js/wire.js";
import { DEFAULT_RTC_CONFIG } from "./web/static/js/rtc.js";
const pick = (module, names) => Object.fromEntries(names.map((name) => [name, module[name]]));
const out = {
  signaling: {
    PROTOCOL_VERSION: signaling.PROTOCOL_VERSION,
    ROLES: signaling.ROLES,
    PEER_ID_RE: signaling.PEER_ID_RE.source,
    MIN_PEER_SECRET_CHARS: signaling.MIN_PEER_SECRET_CHARS,
    MAX_PEER_SECRET_CHARS: signaling.MAX_PEER_SECRET_CHARS,
  },
  wire: { ...pick(wire, NAMES), PEER_ID_PATTERN: wire.PEER_ID_PATTERN.source },
  channels: pick(DEFAULT_RTC_CONFIG, ["channelLabel", "channelId", "piecesLabel",
    "piecesChannelId"]),
};
console.log(JSON.stringify(out));
"""

#: The peer wire constants both languages declare (numbers, and enums as name -> value).
PEER_WIRE_NAMES = [
    "PROTOCOL_VERSION",
    "MAX_MESSAGE_BYTES",
    "PIECE_OVERHEAD_BYTES",
    "MAX_PIECE_BYTES",
    "MAX_PIECES_PER_CHUNK",
    "MAX_BUFFER_MAP_BITS",
    "MAX_BYE_TEXT_BYTES",
    "HASH_BYTES",
    "SIGNATURE_BYTES",
    "REQUEST_FLAG_HEADER",
    "MAX_PEERS_LISTED",
    "MAX_SIGNAL_PAYLOAD_BYTES",
    "MsgType",
    "Role",
    "Capability",
    "ByeReason",
]


@pytest.fixture(scope="module")
def js_constants() -> dict[str, Any]:
    node = required_program("node", "REQUIRE_NODE", "Node 20+: Debian nodejs; `make browser`")
    names = [*PEER_WIRE_NAMES, "HEADER_FIXED_BYTES", "UNORDERED_TYPES"]
    script = _DUMP_JS.replace("NAMES", json.dumps(names))
    proc = subprocess.run(
        [node, "--input-type=module", "-e", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    constants: dict[str, Any] = json.loads(proc.stdout)
    return constants


def _python_value(value: Any) -> Any:
    if isinstance(value, type) and issubclass(value, enum.Enum):
        # __members__, not iteration: a flag enum does not iterate over its zero member (NONE).
        return {name: member.value for name, member in value.__members__.items()}
    return value


def test_signaling_vocabulary_is_declared_once_for_python() -> None:
    """Server and peers use the very objects of signaling_wire, not copies of them."""
    assert signaling_protocol.PROTOCOL_VERSION is signaling_wire.PROTOCOL_VERSION
    assert signaling_protocol.ROLES is signaling_wire.ROLES
    assert signaling_protocol.PEER_ID_RE is signaling_wire.PEER_ID_RE
    assert signaling_protocol.CHANNEL_NAME_RE is signaling_wire.CHANNEL_NAME_RE
    assert signaling_client.PROTOCOL_VERSION is signaling_wire.PROTOCOL_VERSION
    assert signaling_client.ROLES is signaling_wire.ROLES


def test_page_speaks_the_signaling_vocabulary(js_constants: dict[str, Any]) -> None:
    page = js_constants["signaling"]
    assert page["PROTOCOL_VERSION"] == signaling_wire.PROTOCOL_VERSION
    assert tuple(page["ROLES"]) == signaling_wire.ROLES
    # The same pattern text means the same language here: ^, [..], {m,n} and $ only.
    assert page["PEER_ID_RE"] == signaling_wire.PEER_ID_RE.pattern
    assert page["MIN_PEER_SECRET_CHARS"] == signaling_wire.MIN_PEER_SECRET_CHARS
    assert page["MAX_PEER_SECRET_CHARS"] == signaling_wire.MAX_PEER_SECRET_CHARS


def test_page_speaks_the_peer_wire_protocol(js_constants: dict[str, Any]) -> None:
    page = js_constants["wire"]
    for name in PEER_WIRE_NAMES:
        assert page[name] == _python_value(getattr(messages, name)), name
    assert page["HEADER_FIXED_BYTES"] == chunk_header.HEADER_FIXED_BYTES
    # Both ends put the same messages on the unordered channel.
    assert sorted(page["UNORDERED_TYPES"]) == sorted(messages.UNORDERED_TYPES)
    # Ids in peers and signal messages are the ids the signaling server gives out.
    assert page["PEER_ID_PATTERN"] == signaling_wire.PEER_ID_RE.pattern
    assert messages.PEER_ID_PATTERN.pattern == signaling_wire.PEER_ID_RE.pattern


def test_page_opens_the_same_data_channels(js_constants: dict[str, Any]) -> None:
    """Both channels are negotiated out of band: label and id must match on both ends."""
    page, python = js_constants["channels"], RtcConfig()
    assert (page["channelLabel"], page["channelId"]) == (python.channel_label, python.channel_id)
    assert (page["piecesLabel"], page["piecesChannelId"]) == (
        python.pieces_label,
        python.pieces_channel_id,
    )
