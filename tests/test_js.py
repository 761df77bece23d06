"""The JavaScript wire protocol and swarm core, run from pytest so that `make test` covers them.

Two kinds of checks: `node --test tests/js/` (golden vectors, signed header, core behaviour), and
real exchanges between Python cores and JS cores (tests/js/bridge_viewer.mjs) in virtual time:
every message crosses the language boundary as wire bytes. A Python source feeds a JS viewer; a JS
source (signing with WebCrypto) feeds a Python viewer; a JS relay forwards a Python source's chunks
to a Python viewer piece by piece. Each receiver must verify the other language's signatures and
play the chunks byte-exact.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from required_tools import required_program

from streamer.protocol import Role
from streamer.swarm import ChunkComplete, ChunkPlayed, DropNeighbour, Event, SwarmPeer
from streamer.swarm.chunks import HeaderVerifier
from streamer.swarm.drain import drain_link
from tests.test_swarm import publish

ROOT = Path(__file__).resolve().parent.parent
JS_TESTS = ROOT / "tests" / "js"
LATENCY_S = 0.02
T0_S = 1_000.0


def node_path() -> str:
    """The node binary; skips, or fails under REQUIRE_NODE=1, when it is missing."""
    return required_program("node", "REQUIRE_NODE", "Node 20+: Debian nodejs; `make browser`")


def test_node_test_suite_passes() -> None:
    node = node_path()
    proc = subprocess.run(
        [node, "--test", str(JS_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = "\n".join(line for line in proc.stdout.splitlines() if line.startswith("# "))
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "# fail 0" in summary
    pass_line = next(line for line in summary.splitlines() if line.startswith("# pass"))
    passed = int(pass_line.split()[2])
    assert passed >= 60, summary


class JsViewer:
    """A JS swarm core (viewer by default) in a node process, one JSON command and reply a line."""

    def __init__(self, node: str) -> None:
        self.proc = subprocess.Popen(
            [node, str(JS_TESTS / "bridge_viewer.mjs")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the JS bridge exited"
        reply: dict[str, Any] = json.loads(line)
        assert "error" not in reply, reply["error"]
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def chunk_bytes(seq: int) -> bytes:
    """40,000 deterministic bytes per seq (three 16 KiB pieces, the last one short)."""
    return b"".join(hashlib.sha256(f"{seq}/{i}".encode()).digest() for i in range(1250))


KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

Output = tuple[list[tuple[str, bytes]], list[dict[str, Any]], float | None]
"""What a node hands back after an input: messages [(to, bytes)], events, its next timer."""


class PyNode:
    """A Python core in the mixed network, drained as streamer/node/driver.py drains it."""

    def __init__(self, core: SwarmPeer) -> None:
        self.core = core

    def add(self, peer: str, now: float) -> Output:
        self.core.add_neighbour(peer, now)
        return self._drain(now)

    def recv(self, peer: str, data: bytes, now: float) -> Output:
        self.core.receive(peer, data, now)
        return self._drain(now)

    def timer(self, now: float) -> Output:
        self.core.handle_timer(now)
        return self._drain(now)

    def publish(self, seq: int, data: bytes, now: float) -> Output:
        publish(self.core, seq, data, float(seq), 1.0, now)
        return self._drain(now)

    def stats(self) -> dict[str, Any]:
        return self.core.stats()

    def close(self) -> None:
        pass

    def _drain(self, now: float) -> Output:
        events = [_event_dict(e) for e in self.core.pop_events()]
        out: list[tuple[str, bytes]] = []
        for _ in range(64):  # a served request may hand its upload slot to another link
            ready = self.core.take_ready()
            if not ready:
                break
            for pid in ready:
                out.extend((pid, msg) for msg in drain_link(self.core, pid, now))
        return out, events, self.core.next_timer()


def _event_dict(event: Event) -> dict[str, Any]:
    """A Python event in the JS bridge's reply shape."""
    kind = type(event).__name__
    if isinstance(event, ChunkPlayed):
        return {"kind": kind, "seq": event.seq, "sha256": hashlib.sha256(event.data).hexdigest()}
    if isinstance(event, ChunkComplete):
        return {"kind": kind, "seq": event.seq}
    if isinstance(event, DropNeighbour):
        return {"kind": kind, "peer": event.peer_id, "reason": event.reason}
    return {"kind": kind}


class JsNode:
    """A JS core in the mixed network (tests/js/bridge_viewer.mjs)."""

    def __init__(self, node: str, now: float, role: str) -> None:
        self.js = JsViewer(node)
        init: dict[str, Any] = {"op": "init", "now": now, "public_key": PUBLIC.hex(), "role": role}
        if role == "source":
            pkcs8 = KEY.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
            init["private_key_pkcs8"] = pkcs8.hex()
        self.js.call(**init)

    def add(self, peer: str, now: float) -> Output:
        return self._output(self.js.call(op="add", peer=peer, now=now))

    def recv(self, peer: str, data: bytes, now: float) -> Output:
        return self._output(self.js.call(op="recv", peer=peer, hex=data.hex(), now=now))

    def timer(self, now: float) -> Output:
        return self._output(self.js.call(op="timer", now=now))

    def publish(self, seq: int, data: bytes, now: float) -> Output:
        reply = self.js.call(
            op="publish", seq=seq, hex=data.hex(), start_s=float(seq), duration_s=1.0, now=now
        )
        return self._output(reply)

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.js.call(op="stats")["stats"]
        return stats

    def close(self) -> None:
        self.js.close()

    @staticmethod
    def _output(reply: dict[str, Any]) -> Output:
        out = [(peer, bytes.fromhex(hex_text)) for peer, hex_text in reply["out"]]
        return out, reply["events"], reply["timer"]


class Mesh:
    """Python and JS cores on links with a fixed latency, in virtual time (no bandwidth limit)."""

    def __init__(self) -> None:
        self.nodes: dict[str, PyNode | JsNode] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._armed: dict[str, float | None] = {}
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []
        self._order = itertools.count()

    def add(self, name: str, node: PyNode | JsNode) -> None:
        self.nodes[name] = node
        self.events[name] = []
        self._armed[name] = None

    def at(self, when: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._order), fn))

    def link(self, a: str, b: str, now: float) -> None:
        self._handle(a, self.nodes[a].add(b, now), now)
        self._handle(b, self.nodes[b].add(a, now), now)

    def publish(self, name: str, seq: int, now: float) -> None:
        self._handle(name, self.nodes[name].publish(seq, chunk_bytes(seq), now), now)

    def publish_every_second(self, name: str, chunks: int) -> None:
        """Release chunks 0..chunks-1 from source `name` at T0_S + seq."""
        for seq in range(chunks):
            self.at(T0_S + seq, functools.partial(self._publish_at, name, seq))

    def _publish_at(self, name: str, seq: int, now: float) -> None:
        self.publish(name, seq, now)

    def run(self, end_s: float) -> None:
        while self._queue and self._queue[0][0] <= end_s:
            when, _n, fn = heapq.heappop(self._queue)
            fn(when)

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()

    def played(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events[name] if e["kind"] == "ChunkPlayed"]

    def _handle(self, name: str, output: Output, now: float) -> None:
        out, events, timer = output
        self.events[name].extend(events)
        for peer, data in out:
            self.at(now + LATENCY_S, functools.partial(self._deliver, peer, name, data))
        if timer is not None and timer != self._armed[name]:
            self._armed[name] = timer
            self.at(max(timer, now), functools.partial(self._fire, name, timer))

    def _deliver(self, to: str, frm: str, data: bytes, now: float) -> None:
        self._handle(to, self.nodes[to].recv(frm, data, now), now)

    def _fire(self, name: str, armed: float, now: float) -> None:
        if self._armed[name] == armed:
            self._armed[name] = None
            self._handle(name, self.nodes[name].timer(now), now)


def assert_played_byte_exact(played: list[dict[str, Any]], at_least: int) -> None:
    assert len(played) >= at_least, played
    for e in played:
        assert e["sha256"] == hashlib.sha256(chunk_bytes(e["seq"])).hexdigest(), e["seq"]
    assert [e["seq"] for e in played] == sorted(e["seq"] for e in played)


def python_viewer(now: float) -> PyNode:
    return PyNode(SwarmPeer(role=Role.VIEWER, now=now, verifier=HeaderVerifier(PUBLIC)))


def test_python_source_feeds_js_viewer_over_the_wire() -> None:
    node = node_path()
    mesh = Mesh()
    chunks = 12
    try:
        mesh.add("src", PyNode(SwarmPeer(role=Role.SOURCE, now=T0_S - 1)))
        mesh.publish_every_second("src", chunks)

        def join(now: float) -> None:
            mesh.add("js", JsNode(node, now, "viewer"))
            mesh.link("js", "src", now)

        mesh.at(T0_S + 2.5, join)
        mesh.run(T0_S + chunks + 2.0)  # the last chunk plays ~2.5 s after its release
        stats = mesh.nodes["js"].stats()
        source_stats = mesh.nodes["src"].stats()
    finally:
        mesh.close()
    events = mesh.events["js"]
    played = mesh.played("js")
    assert_played_byte_exact(played, chunks - 3)
    verified = [e for e in events if e["kind"] == "VerifyHeader"]
    assert len(verified) >= len(played)
    for e in played:
        assert 0 < e["lag_s"] < 3.5  # target_lag_s 2.5 after release
    assert not [e for e in events if e["kind"] == "DropNeighbour"], events
    assert stats["continuity"] == 1.0
    assert stats["chunks_missed"] == 0
    assert stats["bytes_from_source"] >= len(played) * 40_000
    assert source_stats["bytes_uploaded"] >= stats["bytes_from_source"]


def test_js_source_feeds_python_viewer_over_the_wire() -> None:
    """The JS core as the server: it signs (WebCrypto), super-seeds and serves; Python verifies."""
    node = node_path()
    mesh = Mesh()
    chunks = 10
    try:
        mesh.add("src", JsNode(node, T0_S - 1, "source"))
        mesh.publish_every_second("src", chunks)

        def join(now: float) -> None:
            mesh.add("py", python_viewer(now))
            mesh.link("py", "src", now)

        mesh.at(T0_S + 2.5, join)
        mesh.run(T0_S + chunks + 2.0)  # the last chunk plays ~2.5 s after its release
        stats = mesh.nodes["py"].stats()
        source_stats = mesh.nodes["src"].stats()
    finally:
        mesh.close()
    assert_played_byte_exact(mesh.played("py"), chunks - 3)
    assert not [e for e in mesh.events["py"] if e["kind"] == "DropNeighbour"]
    assert stats["continuity"] == 1.0 and stats["chunks_missed"] == 0
    assert stats["bytes_from_source"] >= len(mesh.played("py")) * 40_000
    assert source_stats["stream_bytes"] == chunks * 40_000
    assert source_stats["bytes_uploaded"] >= stats["bytes_from_source"]


def test_js_relay_forwards_python_source_to_python_viewer() -> None:
    """Every byte the Python viewer plays crossed the JS relay (its only neighbour)."""
    node = node_path()
    mesh = Mesh()
    chunks = 10
    try:
        mesh.add("src", PyNode(SwarmPeer(role=Role.SOURCE, now=T0_S - 1)))
        mesh.add("relay", JsNode(node, T0_S - 1, "relay"))
        mesh.link("src", "relay", T0_S - 1)
        mesh.publish_every_second("src", chunks)

        def join(now: float) -> None:
            mesh.add("py", python_viewer(now))
            mesh.link("py", "relay", now)

        mesh.at(T0_S + 2.5, join)
        mesh.run(T0_S + chunks + 2.0)  # the last chunk plays ~2.5 s after its release
        stats = mesh.nodes["py"].stats()
        relay_stats = mesh.nodes["relay"].stats()
    finally:
        mesh.close()
    played = mesh.played("py")
    assert_played_byte_exact(played, chunks - 4)
    assert not [e for e in mesh.events["py"] if e["kind"] == "DropNeighbour"]
    assert not [e for e in mesh.events["relay"] if e["kind"] == "DropNeighbour"]
    assert stats["continuity"] == 1.0
    assert stats["bytes_from_source"] == 0
    assert stats["bytes_from_peers"] >= len(played) * 40_000
    assert relay_stats["bytes_uploaded"] >= stats["bytes_from_peers"]
    assert relay_stats["continuity"] == 1.0
