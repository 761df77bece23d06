"""The JavaScript wire protocol and swarm core, run from pytest so that `make test` covers them.

Two checks: `node --test tests/js/` (golden vectors, signed header, core behaviour), and a real
exchange between a Python source core and a JS viewer core (tests/js/bridge_viewer.mjs) in virtual
time: every message crosses the language boundary as wire bytes, and the JS viewer must verify the
Python source's signatures and play its chunks byte-exact.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streamer.protocol import Role
from streamer.swarm import SwarmPeer

ROOT = Path(__file__).resolve().parent.parent
JS_TESTS = ROOT / "tests" / "js"
LATENCY_S = 0.02
T0_S = 1_000.0


def node_path() -> str:
    """The node binary; skips, or fails under REQUIRE_NODE=1, when it is missing."""
    found = shutil.which("node")
    if found is None:
        if os.environ.get("REQUIRE_NODE") == "1":
            pytest.fail("REQUIRE_NODE=1 but `node` is not on PATH")
        pytest.skip("`node` is not on PATH: the JavaScript tests need Node 20+")
    return found


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
    """The JS viewer core in a node process, one JSON command and reply per line."""

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


def test_python_source_feeds_js_viewer_over_the_wire() -> None:
    node = node_path()
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    source = SwarmPeer(role=Role.SOURCE, now=T0_S - 1, signing_key=key)
    viewer = JsViewer(node)
    queue: list[tuple[float, int, Callable[[float], None]]] = []
    order = itertools.count()
    events: list[dict[str, Any]] = []
    js_timer: list[float | None] = [None]

    def at(when: float, fn: Callable[[float], None]) -> None:
        heapq.heappush(queue, (when, next(order), fn))

    def on_js_reply(reply: dict[str, Any], now: float) -> None:
        events.extend(reply["events"])
        for _peer, hex_text in reply["out"]:
            data = bytes.fromhex(hex_text)
            at(now + LATENCY_S, functools.partial(feed_source, data=data))
        timer = reply["timer"]
        if timer is not None and timer != js_timer[0]:
            js_timer[0] = timer

            def fire(t: float, armed: float = timer) -> None:
                if js_timer[0] == armed:
                    js_timer[0] = None
                    on_js_reply(viewer.call(op="timer", now=t), t)

            at(max(timer, now), fire)

    def pump_source(now: float) -> None:
        for event in source.pop_events():
            events.append({"kind": "source:" + type(event).__name__})
        for pid in source.take_ready():
            out: list[bytes] = []
            while (msg := source.next_control_message(pid)) is not None:
                out.append(msg)
            while (msg := source.next_data_message(pid, now)) is not None:
                out.append(msg)
            for data in out:
                hex_text = data.hex()
                at(now + LATENCY_S, functools.partial(feed_js, hex_text=hex_text))

    def feed_source(now: float, data: bytes) -> None:
        source.receive("js", data, now)
        pump_source(now)

    def feed_js(now: float, hex_text: str) -> None:
        on_js_reply(viewer.call(op="recv", peer="src", hex=hex_text, now=now), now)

    def publish(now: float, seq: int) -> None:
        source.publish_chunk(seq, chunk_bytes(seq), float(seq), 1.0, now)
        pump_source(now)

    def join(now: float) -> None:
        on_js_reply(viewer.call(op="init", now=now, public_key=public.hex()), now)
        on_js_reply(viewer.call(op="add", peer="src", now=now), now)
        source.add_neighbour("js", now)
        pump_source(now)

    chunks = 12
    try:
        for seq in range(chunks):
            at(T0_S + seq, functools.partial(publish, seq=seq))
        at(T0_S + 2.5, join)
        end_s = T0_S + chunks + 1.0
        while queue and queue[0][0] <= end_s:
            when, _n, fn = heapq.heappop(queue)
            fn(when)
        stats = viewer.call(op="stats")["stats"]
    finally:
        viewer.close()

    played = [e for e in events if e["kind"] == "ChunkPlayed"]
    verified = [e for e in events if e["kind"] == "VerifyHeader"]
    assert len(played) >= chunks - 3, events
    assert len(verified) >= len(played)
    for e in played:
        assert e["sha256"] == hashlib.sha256(chunk_bytes(e["seq"])).hexdigest()
        assert 0 < e["lag_s"] < 3
    assert [e["seq"] for e in played] == sorted(e["seq"] for e in played)
    assert not [e for e in events if e["kind"] == "DropNeighbour"], events
    assert stats["continuity"] == 1.0
    assert stats["chunks_missed"] == 0
    assert stats["bytes_from_source"] >= len(played) * 40_000
    assert source.stats()["bytes_uploaded"] >= stats["bytes_from_source"]
