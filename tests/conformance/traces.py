"""Traces of one swarm core: every input it got in a simulator run and every output it gave.

A trace is JSON: {"about", "init": {role, now, seed, upload, config (fields that differ from
SwarmConfig's defaults), public_key}, "steps": [{"op", ...inputs, "expect": output}]}. The same
format holds the hand-written scenarios of tests/conformance/scenarios/ (there, a step without
"expect" is not checked). tests/conformance/replay.mjs feeds a trace into a fresh JS core and
replay() below into a fresh Python core; both return one output per step in the same shape, so a
difference in any message byte, event, timer or figure shows up as the first diverging step.

Ops (outputs in brackets): add [accepted], remove, recv (hex), timer (handle_timer), link_full
(set_link_full: peer, full), uplink_delivered (bytes, outstanding, now), publish (signed header
hex + data hex), ctl [hex or null], data [hex or null], ready [sorted ids], events [normalised
events], next_timer [seconds or null], upload_peers [ids], has_room [bool], stats [the figures
both cores report].

For hand-written scenarios, inputs may be given readably instead of as hex: recv with "msg" (the
field view of streamer/protocol/jsonview.py), with "header" {seq, size, start_s, duration_s,
release_s, piece_size} (the test key signs it) or with "piece" {seq, size, index, piece_size};
publish with "chunk" {seq, size, start_s, duration_s} (released at now). A chunk of seq is `size`
bytes of seq % 256. With "view": "fields", ctl and data give the field view (without payloads,
hashes and signatures) and events leave out hashes and byes. Scenarios may also use: recv with
"flip_byte" (a forgery), ctl and data with "all" (every queued message, as a list), stats with
"fields" (only those figures) and the playback op [where playout starts and stands];
tests/conformance/README.md describes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import (
    ChunkHeader,
    Piece,
    Role,
    decode_message,
    encode_message,
    make_chunk_header,
    split_pieces,
)
from streamer.protocol.jsonview import message_from_dict, message_to_dict
from streamer.sim.scenario import Scenario, run_scenario, test_key
from streamer.swarm import (
    ChunkComplete,
    ChunkMissed,
    ChunkPlayed,
    DropNeighbour,
    Event,
    HeaderVerifier,
    PeerSignal,
    SwarmConfig,
    SwarmPeer,
    WantNeighbours,
)
from streamer.swarm.scheduler import Mulberry32

ROLES = {"source": Role.SOURCE, "relay": Role.RELAY, "viewer": Role.VIEWER}

STATS_KEYS = (
    "role",
    "startup_s",
    "continuity",
    "lag_s_p50",
    "lag_s_p95",
    "chunks_played",
    "chunks_late",
    "chunks_missed",
    "lag_added_s",
    "stall_s",
    "reanchored_s",
    "reanchors",
    "paused_s",
    "longest_pause_s",
    "bytes_from_source",
    "bytes_from_peers",
    "bytes_uploaded",
    "bytes_duplicate",
    "timeouts",
    "rescues",
    "moved",
    "stream_bytes",
    "neighbours",
    "drops",
    "exchange_hints",
    "signals_relayed",
    "signals_dropped",
    "startup_phases",
)
"""The figures both cores report (Python's stats() has a few more)."""


def public_key_hex() -> str:
    return test_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def config_overrides(config: SwarmConfig) -> dict[str, Any]:
    """The fields of config that differ from the defaults: a default changed in one language
    only must change what the traces see."""
    defaults = SwarmConfig()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(SwarmConfig)
        if getattr(config, f.name) != getattr(defaults, f.name)
    }


def event_dict(event: Event) -> dict[str, Any]:
    """An event as both replayers write it (payloads as their SHA-256)."""
    if isinstance(event, ChunkComplete):
        return {"kind": "ChunkComplete", "seq": event.seq, "sha256": _sha(event.data)}
    if isinstance(event, ChunkPlayed):
        return {
            "kind": "ChunkPlayed",
            "seq": event.seq,
            "lag_s": event.lag_s,
            "sha256": _sha(event.data),
        }
    if isinstance(event, ChunkMissed):
        return {"kind": "ChunkMissed", "seq": event.seq}
    if isinstance(event, DropNeighbour):
        return {
            "kind": "DropNeighbour",
            "peer": event.peer_id,
            "reason": event.reason,
            "bye": None if event.bye is None else event.bye.hex(),
        }
    if isinstance(event, WantNeighbours):
        return {"kind": "WantNeighbours", "count": event.count}
    if isinstance(event, PeerSignal):
        return {
            "kind": "PeerSignal",
            "from": event.from_peer,
            "via": event.via,
            "payload": event.payload,
        }
    raise TypeError(f"unknown event {event!r}")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stats_dict(stats: dict[str, Any]) -> dict[str, Any]:
    return {key: stats[key] for key in STATS_KEYS}


class RecordingPeer(SwarmPeer):
    """A SwarmPeer that logs the calls its driver makes (not its own inner calls) as steps."""

    def __init__(self, **kwargs: Any) -> None:
        self.steps: list[dict[str, Any]] = []
        self._depth = 1  # (the constructor's own calls are not the driver's)
        super().__init__(**kwargs)
        self._depth = 0

    @contextmanager
    def _call(self, op: str, **inputs: Any) -> Iterator[dict[str, Any]]:
        """Log op when the driver calls it; the body stores the output in step["expect"]."""
        outer = self._depth == 0
        self._depth += 1
        step: dict[str, Any] = {"op": op, **inputs}
        try:
            yield step
        finally:
            self._depth -= 1
        if outer:
            self.steps.append(step)

    def add_neighbour(self, peer_id: str, now: float) -> bool:
        with self._call("add", now=now, peer=peer_id) as step:
            step["expect"] = accepted = super().add_neighbour(peer_id, now)
        return accepted

    def remove_neighbour(self, peer_id: str, now: float) -> None:
        with self._call("remove", now=now, peer=peer_id):
            super().remove_neighbour(peer_id, now)

    def receive(self, peer_id: str, data: bytes, now: float) -> None:
        with self._call("recv", now=now, peer=peer_id, hex=data.hex()):
            super().receive(peer_id, data, now)

    def handle_timer(self, now: float) -> None:
        with self._call("timer", now=now):
            super().handle_timer(now)

    def publish_chunk(self, header: ChunkHeader, data: bytes, now: float) -> None:
        with self._call("publish", now=now, header=header.encode().hex(), data=data.hex()):
            super().publish_chunk(header, data, now)

    def next_control_message(self, peer_id: str) -> bytes | None:
        with self._call("ctl", peer=peer_id) as step:
            data = super().next_control_message(peer_id)
            step["expect"] = None if data is None else data.hex()
        return data

    def next_data_message(self, peer_id: str, now: float) -> bytes | None:
        with self._call("data", now=now, peer=peer_id) as step:
            data = super().next_data_message(peer_id, now)
            step["expect"] = None if data is None else data.hex()
        return data

    def take_ready(self) -> set[str]:
        with self._call("ready") as step:
            ready = super().take_ready()
            step["expect"] = sorted(ready)
        return ready

    def pop_events(self) -> list[Event]:
        with self._call("events") as step:
            events = super().pop_events()
            step["expect"] = [event_dict(e) for e in events]
        return events

    def next_timer(self) -> float | None:
        with self._call("next_timer") as step:
            step["expect"] = when = super().next_timer()
        return when

    def upload_peers(self) -> list[str]:
        with self._call("upload_peers") as step:
            step["expect"] = peers = super().upload_peers()
        return peers

    def has_room(self) -> bool:
        with self._call("has_room") as step:
            step["expect"] = room = super().has_room()
        return room

    def set_link_full(self, peer_id: str, full: bool) -> None:
        with self._call("link_full", peer=peer_id, full=full):
            super().set_link_full(peer_id, full)

    def uplink_delivered(self, delivered_bytes: int, outstanding_bytes: int, now: float) -> None:
        with self._call(
            "uplink_delivered", bytes=delivered_bytes, outstanding=outstanding_bytes, now=now
        ):
            super().uplink_delivered(delivered_bytes, outstanding_bytes, now)


@dataclass(frozen=True, slots=True)
class TraceRun:
    """A simulator run whose cores are all recorded: one trace per peer (source included)."""

    name: str
    scenario: Scenario


def record(run: TraceRun) -> dict[str, dict[str, Any]]:
    """Run the scenario with recording cores; returns {trace name: trace}."""
    recorders: dict[str, tuple[RecordingPeer, dict[str, Any]]] = {}
    sc = run.scenario

    def make_core(peer_id: str, **kwargs: Any) -> SwarmPeer:
        # The simulator's own generator picks the seed: the run stays reproducible.
        seed = int(kwargs.pop("rng").random() * 2**32)
        kwargs.pop("piece_pool", None)
        core = RecordingPeer(rng=Mulberry32(seed), peer_id=peer_id, **kwargs)
        role = kwargs["role"]
        init = {
            "peer_id": peer_id,
            "role": role.name.lower(),
            "now": kwargs["now"],
            "seed": seed,
            "upload": kwargs.get("upload", True),
            "config": config_overrides(kwargs["config"]),
            "public_key": public_key_hex(),
        }
        recorders[peer_id] = (core, init)
        return core

    run_scenario(sc, make_core=make_core)
    traces = {}
    for peer_id, (core, init) in recorders.items():
        steps = [*core.steps, {"op": "stats", "expect": stats_dict(core.stats())}]
        traces[f"{run.name}/{peer_id}"] = {
            "about": f"{peer_id} in {run.name}: {sc}",
            "init": init,
            "steps": steps,
        }
    return traces


def replay(trace: dict[str, Any]) -> list[Any]:
    """Feed trace into a fresh Python core; one output per step (None for inputs)."""
    init = trace["init"]
    role = ROLES[init["role"]]
    core = SwarmPeer(
        role=role,
        now=init["now"],
        config=replace(SwarmConfig(), **init.get("config", {})),
        verifier=None if role == Role.SOURCE else HeaderVerifier(bytes.fromhex(init["public_key"])),
        rng=Mulberry32(init.get("seed", 0)),
        upload=init.get("upload", True),
        peer_id=init.get("peer_id", ""),
    )
    return [_step(core, step) for step in trace["steps"]]


BULKY_FIELDS = ("payload", "piece_hashes", "signature")
"""Left out of the field view of a hand-written scenario's outputs."""


def chunk_data(seq: int, size: int) -> bytes:
    return bytes([seq % 256]) * size


def signed_header(spec: dict[str, Any], release_s: float | None = None) -> ChunkHeader:
    """The test key's header of a scenario's chunk spec."""
    return make_chunk_header(
        seq=spec["seq"],
        data=chunk_data(spec["seq"], spec["size"]),
        start_us=round(spec["start_s"] * 1e6),
        duration_us=round(spec["duration_s"] * 1e6),
        release_us=round((spec["release_s"] if release_s is None else release_s) * 1e6),
        piece_size=spec["piece_size"],
        signing_key=test_key(),
    )


def received_bytes(step: dict[str, Any]) -> bytes:
    """A recv step's message: hex, a field view, or a chunk's header or piece; with
    "flip_byte": n, byte n of it (from the end when negative) inverted (a forgery)."""
    data = bytearray(_message_in(step))
    if "flip_byte" in step:
        data[step["flip_byte"]] ^= 0xFF
    return bytes(data)


def _message_in(step: dict[str, Any]) -> bytes:
    if "hex" in step:
        return bytes.fromhex(step["hex"])
    if "msg" in step:
        return encode_message(message_from_dict(step["msg"]))
    if "header" in step:
        return signed_header(step["header"]).encode()
    spec = step["piece"]
    pieces = split_pieces(chunk_data(spec["seq"], spec["size"]), spec["piece_size"])
    index = spec["index"]
    return encode_message(Piece(spec["seq"], index, len(pieces), pieces[index]))


def _messages_out(step: dict[str, Any], take: Callable[[], bytes | None]) -> Any:
    """One message (or None), or with "all": true every one queued, as a list."""
    if not step.get("all"):
        return _message_out(step, take())
    out = []
    while (data := take()) is not None:
        out.append(_message_out(step, data))
    return out


def playback_dict(core: SwarmPeer) -> dict[str, Any] | None:
    """Where playout starts and stands (None before a viewer's start point and for a source)."""
    pb = core.playback
    if pb is None:
        return None
    return {
        "started": pb.started,
        "start_seq": pb.start_seq,
        "next_seq": pb.next_seq,
        "play_start_s": pb.play_start_s,
    }


def _message_out(step: dict[str, Any], data: bytes | None) -> Any:
    if data is None:
        return None
    if step.get("view") != "fields":
        return data.hex()
    fields = message_to_dict(decode_message(data))
    return {k: v for k, v in fields.items() if k not in BULKY_FIELDS}


def _step(core: SwarmPeer, step: dict[str, Any]) -> Any:
    op = step["op"]
    if op == "add":
        return core.add_neighbour(step["peer"], step["now"])
    if op == "remove":
        core.remove_neighbour(step["peer"], step["now"])
    elif op == "recv":
        core.receive(step["peer"], received_bytes(step), step["now"])
    elif op == "timer":
        core.handle_timer(step["now"])
    elif op == "link_full":
        core.set_link_full(step["peer"], step["full"])
    elif op == "uplink_delivered":
        core.uplink_delivered(step["bytes"], step["outstanding"], step["now"])
    elif op == "publish":
        if "chunk" in step:
            spec = {**step["chunk"], "piece_size": core.config.piece_size_bytes}
            header = signed_header(spec, release_s=step["now"])
            data = chunk_data(spec["seq"], spec["size"])
        else:
            decoded = decode_message(bytes.fromhex(step["header"]))
            assert isinstance(decoded, ChunkHeader)
            header, data = decoded, bytes.fromhex(step["data"])
        core.publish_chunk(header, data, step["now"])
    elif op == "ctl":
        return _messages_out(step, lambda: core.next_control_message(step["peer"]))
    elif op == "data":
        return _messages_out(step, lambda: core.next_data_message(step["peer"], step["now"]))
    elif op == "ready":
        return sorted(core.take_ready())
    elif op == "events":
        events = [event_dict(e) for e in core.pop_events()]
        if step.get("view") == "fields":
            events = [{k: v for k, v in e.items() if k not in ("sha256", "bye")} for e in events]
        return events
    elif op == "next_timer":
        return core.next_timer()
    elif op == "upload_peers":
        return core.upload_peers()
    elif op == "has_room":
        return core.has_room()
    elif op == "stats":
        stats = stats_dict(core.stats())
        if "fields" in step:
            return {key: stats[key] for key in step["fields"]}
        return stats
    elif op == "playback":
        return playback_dict(core)
    elif op == "candidates":
        return [list(c) for c in core.exchange_candidates(step["count"], step["now"])]
    elif op == "send_signal":
        return core.send_signal(step["via"], step["to"], step["payload"])
    else:
        raise ValueError(f"unknown op {op}")
    return None


def first_divergence(trace: dict[str, Any], outputs: list[Any], context: int = 6) -> str | None:
    """None when outputs match every checked step of trace; else where and how they differ,
    with the steps leading there."""
    steps = trace["steps"]
    if len(outputs) != len(steps):
        return f"{len(outputs)} outputs for {len(steps)} steps"
    for n, (step, got) in enumerate(zip(steps, outputs, strict=True)):
        if "expect" not in step or step["expect"] == got:
            continue
        lines = [f"step {n} ({step['op']}): expected {_short(step['expect'])}, got {_short(got)}"]
        for k in range(max(0, n - context), n + 1):
            shown = {key: value for key, value in steps[k].items() if key != "expect"}
            lines.append(f"  [{k}] {_short(shown)} -> {_short(steps[k].get('expect'))}")
        return "\n".join(lines)
    return None


def _short(value: Any, limit: int = 400) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
