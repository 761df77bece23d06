"""Pages and operations endpoints, and the `streamer serve` / `python -m signaling` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from signaling_helpers import join, make_client, media, receive

from signaling.config import parse_ice_servers
from streamer.errors import UserError

ROOT = Path(__file__).resolve().parent.parent


async def _live_channel(client: Any, name: str = "demo") -> Any:
    source, _ = await join(client, name, "broadcaster", secret="k")
    await source.send_json({"type": "publish", "media": media(bitrate_bps=1_500_000)})
    await source.send_json({"type": "ping"})
    assert await receive(source) == {"type": "pong"}
    return source


async def test_index_lists_live_channels_with_figures(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    await _live_channel(client)
    await join(client, "demo")
    await join(client, "demo", "relay")
    await join(client, "lonely-waiting-room")  # viewer-only channel: not advertised
    resp = await client.get("/")
    html = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    assert 'href="/watch/demo"' in html and "lonely-waiting-room" not in html
    assert '<dd class="viewers">1</dd>' in html and '<dd class="relays">1</dd>' in html
    assert "1.5 Mbit/s" in html and 'name="viewport"' in html
    css = await client.get("/static/style.css")
    assert css.status == 200 and "@media" in await css.text()


async def test_watch_page_escapes_and_rejects_bad_names(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client, failover_urls=("http://b.example:8081",))
    resp = await client.get("/watch/my_show")
    html = await resp.text()
    assert resp.status == 200 and "my_show" in html
    config_json = html.split('id="streamer-config" type="application/json">')[1].split("</script>")[
        0
    ]
    assert json.loads(config_json) == {
        "channel": "my_show",
        "ws_path": "/ws",
        "protocol_version": 1,
        "ice_servers": [],
        "failover_urls": ["http://b.example:8081"],
    }
    resp = await client.get("/watch/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    body = await resp.text()
    assert resp.status == 404
    assert "<script>alert(1)" not in body and "&lt;script&gt;alert(1)" in body


async def test_api_channels_json(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    await _live_channel(client)
    await join(client, "demo")
    listing = await (await client.get("/api/channels")).json()
    [channel] = listing["channels"]
    assert channel["name"] == "demo" and channel["state"] == "live"
    assert channel["viewers"] == 1 and channel["bitrate_bps"] == 1_500_000
    assert channel["uptime_s"] >= 0
    detail = await client.get("/api/channels/demo")
    assert (await detail.json())["peers"] == 2
    assert "owner_secret_hash" not in json.dumps(listing)
    assert (await client.get("/api/channels/nope")).status == 404
    assert (await client.get("/api/channels/bad%20name")).status == 404


async def test_metrics_and_healthz(aiohttp_client: Any) -> None:
    client = await make_client(aiohttp_client)
    await _live_channel(client)
    viewer, _ = await join(client)
    await viewer.send_str("not json")
    await receive(viewer)
    text = await (await client.get("/metrics")).text()
    lines = set(text.splitlines())
    assert 'signaling_peers{role="viewer"} 1.0' in lines
    assert 'signaling_peers{role="broadcaster"} 1.0' in lines
    assert "signaling_channels 1.0" in lines
    assert 'signaling_messages_in_total{type="join"} 2.0' in lines
    assert 'signaling_messages_in_total{type="publish"} 1.0' in lines
    assert 'signaling_errors_total{code="bad_json"} 1.0' in lines
    assert "# TYPE signaling_bytes_in_total counter" in lines
    assert "# TYPE signaling_join_seconds histogram" in lines
    assert "signaling_join_seconds_count 2.0" in lines
    bytes_out = next(line for line in lines if line.startswith("signaling_bytes_out_total "))
    assert float(bytes_out.split()[1]) > 0
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["connections"] == 2


def test_ice_server_urls_checked() -> None:
    servers = parse_ice_servers(["stun:a.example:3478", "turns:b.example:443"], "u", "p")
    assert servers[0].to_json() == {"urls": ["stun:a.example:3478"]}
    assert servers[1].to_json()["username"] == "u"
    with pytest.raises(UserError):
        parse_ice_servers(["http://not-ice"])


def _env() -> dict[str, str]:
    """This environment, without a chosen allocator (the server picks its own)."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONMALLOC"}
    return {**inherited, "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize(
    "command", [["-m", "streamer", "serve"], ["-m", "signaling"]], ids=["streamer", "module"]
)
def test_serve_process_starts_answers_and_stops_on_sigterm(command: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, *command, "--port", "0", "--ice-server", "stun:s.example:3478"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("signaling server listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        import urllib.request

        with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        # It re-ran itself on the C allocator (memory comes back after a flood of joins).
        assert "PYTHONMALLOC=malloc" in _environ_of(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def _environ_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")


def test_an_allocator_chosen_by_the_host_is_kept() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "signaling", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env={**_env(), "PYTHONMALLOC": "pymalloc"},
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("signaling server listening on")
        environ = _environ_of(proc.pid)
        assert "PYTHONMALLOC=pymalloc" in environ and "PYTHONMALLOC=malloc" not in environ
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_errors_are_one_line() -> None:
    for args in (["--ice-server", "http://x"], ["--port", "70000"]):
        done = subprocess.run(
            [sys.executable, "-m", "streamer", "serve", *args],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            timeout=30,
        )
        assert done.returncode == 2
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    # Port already taken: the second server says so in one line.
    first = subprocess.Popen(
        [sys.executable, "-m", "signaling", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    try:
        assert first.stdout is not None
        port = first.stdout.readline().rsplit(":", 1)[-1].strip()
        done = subprocess.run(
            [sys.executable, "-m", "streamer", "serve", "--port", port],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            timeout=30,
        )
        assert done.returncode == 2 and "cannot listen" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        first.terminate()
        first.wait(timeout=10)
