"""Pure pieces of the node: rates, token bucket, key file, media description, status, stats."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import av
import pytest

from streamer.errors import UserError
from streamer.media import MediaInfo
from streamer.node.keyfile import load_or_create_key
from streamer.node.media_info import MediaInfoError, media_description, parse_media
from streamer.node.recorder import Mp4Recorder
from streamer.node.stats_file import write_stats_json
from streamer.node.status import RateMeter, StatusPrinter, format_status
from streamer.node.token_bucket import TokenBucket
from streamer.node.units import parse_rate_bps


@pytest.mark.parametrize(
    ("text", "rate_bps"),
    [("500k", 500_000), ("2M", 2_000_000), ("1.5Mbit", 1_500_000), ("800", 800), ("1G", 10**9)],
)
def test_parse_rate(text: str, rate_bps: int) -> None:
    assert parse_rate_bps(text) == rate_bps


@pytest.mark.parametrize("text", ["", "fast", "-1M", "0", "2 MB/s/s", "1T"])
def test_parse_rate_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate_bps(text)


def test_token_bucket_holds_the_rate_on_average() -> None:
    bucket = TokenBucket(rate_bytes_per_s=100_000, burst_bytes=20_000, now=0.0)
    sent = 0
    now = 0.0
    while now < 10.0:
        if bucket.ready(now):
            bucket.consume(16_384, now)
            sent += 16_384
        else:
            now += bucket.wait_s(now)
    # 10 s at 100 kB/s plus at most the burst and one message.
    assert 1_000_000 - 16_384 <= sent <= 1_000_000 + 20_000 + 16_384


def test_token_bucket_wait_is_exact_enough() -> None:
    bucket = TokenBucket(rate_bytes_per_s=1000, burst_bytes=1000, now=0.0)
    bucket.consume(3000, 0.0)  # 2000 in debt
    assert not bucket.ready(1.0)
    assert 1.0 <= bucket.wait_s(1.0) <= 1.01
    assert bucket.ready(2.01)


def test_key_file_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "k.key"
    first = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_or_create_key(path)
    assert again.public_key_raw == first.public_key_raw
    assert again.secret == first.secret
    other = load_or_create_key(tmp_path / "other.key")
    assert other.public_key_raw != first.public_key_raw


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    load_or_create_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="chmod 600"):
        load_or_create_key(path)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        json.dumps({"version": 1, "channel_secret": "short", "ed25519_private_key": ""}).encode(),
        json.dumps(
            {"version": 1, "channel_secret": "x" * 20, "ed25519_private_key": "AAAA"}
        ).encode(),
        json.dumps({"version": 9}).encode(),
    ],
)
def test_corrupt_key_file_is_a_user_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "k.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(UserError, match="not a streamer key file"):
        load_or_create_key(path)


def _info() -> MediaInfo:
    return MediaInfo(
        mime_type='video/mp4; codecs="avc1.64001e,mp4a.40.2"',
        codecs="avc1.64001e,mp4a.40.2",
        init_segment=b"\x00\x00\x00\x08ftyp",
        chunk_seconds=0.5,
        has_video=True,
        has_audio=True,
        width=320,
        height=180,
    )


def test_media_description_round_trips() -> None:
    media = media_description(_info(), b"k" * 32, 900_000, 1234, 77)
    parsed = parse_media(json.loads(json.dumps(media)))
    assert parsed.public_key_raw == b"k" * 32
    assert parsed.init_segment == b"\x00\x00\x00\x08ftyp"
    assert parsed.chunk_seconds == 0.5
    assert parsed.bitrate_bps == 900_000
    assert parsed.first_seq == 1234
    assert parsed.epoch == 77


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("public_key", "AAAA"),
        ("public_key", 7),
        ("init_segment", "!!"),
        ("init_segment", ""),
        ("chunk_seconds", 0),
        ("chunk_seconds", True),
        ("mime_type", None),
        ("bitrate_bps", -1),
        ("first_seq", "x"),
        ("epoch", -1),
        ("epoch", 2**32),
        ("epoch", True),
        ("key_type", "rsa"),
    ],
)
def test_malformed_media_description_is_refused(field: str, value: object) -> None:
    media = media_description(_info(), b"k" * 32, 900_000, 1234, 77)
    media[field] = value
    with pytest.raises(MediaInfoError):
        parse_media(media)


def test_rate_meter_and_status_line() -> None:
    meter = RateMeter()
    meter.sample(0, 10.0)
    assert meter.sample(125_000, 11.0) == pytest.approx(1_000_000)
    line = format_status(
        "relay", {"neighbours": 5, "in_bps": 1e6, "out_bps": 2.5e6, "buffer_chunks": 3}
    )
    assert "nbrs 5" in line and "1.00 Mbit/s" in line and "2.50 Mbit/s" in line
    assert "buffer 3" in line
    assert "TURN" not in line
    assert "via TURN 2" in format_status("watch", {"neighbours": 3, "relayed_neighbours": 2})


def test_status_printer_throttles_when_not_a_tty(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w+") as stream:
        printer = StatusPrinter(stream, interval_s=10.0)
        for now in (0.0, 1.0, 9.0, 10.5, 12.0):
            printer.show(f"t={now}", now)
        stream.seek(0)
        assert stream.read().splitlines() == ["t=0.0", "t=10.5"]


def test_stats_json_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    write_stats_json(path, {"continuity": 1.0})
    assert json.loads(path.read_text()) == {"continuity": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]
    with pytest.raises(UserError, match="cannot write stats"):
        write_stats_json(tmp_path / "missing" / "s.json", {})


def test_recording_of_packaged_chunks_decodes(tmp_path: Path) -> None:
    from streamer.media import MediaOptions, open_media

    stream = open_media("testsrc:160x90@10", MediaOptions(chunk_seconds=0.5, duration_s=2.0))
    recorder = Mp4Recorder(tmp_path / "out.mp4")
    assert recorder.write_init(stream.info.init_segment)
    for index, chunk in enumerate(stream.chunks()):
        if index != 1:  # a skipped chunk must not break the file
            recorder.write_chunk(chunk.data)
    recorder.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 10
    assert recorder.chunks_written >= 3


@pytest.mark.parametrize(
    "argv",
    [
        ["broadcast", "testsrc", "--channel", "../outside", "--key", "/nonexistent/k"],
        ["relay", "--server", "http://127.0.0.1:1", "--channel", "bad name"],
        ["watch", "--server", "http://127.0.0.1:1", "--channel", "x" * 65],
    ],
)
def test_bad_channel_name_is_refused_before_anything_else(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from streamer import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "bad channel name" in err
    assert "Traceback" not in err


def test_merged_stats_count_late_chunks_against_continuity() -> None:
    import random

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from streamer.node.driver import merge_stats
    from streamer.protocol import Role
    from streamer.swarm import HeaderVerifier, SwarmPeer

    key = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    cores = [
        SwarmPeer(role=Role.VIEWER, now=0.0, verifier=HeaderVerifier(key), rng=random.Random(i))
        for i in range(2)
    ]
    figures = [(6, 1, 1, 1.5), (2, 0, 0, 0.0)]
    for core, (played, late, missed, stall_s) in zip(cores, figures, strict=True):
        pb = core.playback
        assert pb is not None
        pb.played, pb.late, pb.missed, pb.stall_s = played, late, missed, stall_s
    merged = merge_stats(cores)
    assert (merged["chunks_played"], merged["chunks_late"], merged["chunks_missed"]) == (8, 1, 1)
    assert merged["continuity"] == 0.8 and merged["stall_s"] == 1.5
