"""Push ingest: the pure address/key logic, and the listener's quick failure paths (no pusher)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from streamer import cli
from streamer.media.errors import MediaError
from streamer.media.ingest import ListenInterrupted, PushListener
from streamer.media.listen import (
    available_listen_schemes,
    listen_support_note,
    parse_listen_url,
    wrong_key_in_logs,
)
from streamer.media.pipeline import reconnect_offset_s

RTMP_ONLY = ["rtmp"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- addresses and keys (pure) ---------------------------------------------------------------


def test_listen_url_defaults_and_generated_key() -> None:
    spec = parse_listen_url("rtmp://0.0.0.0/live", available=RTMP_ONLY, make_key=lambda: "k1")
    assert (spec.host, spec.port, spec.app, spec.key) == ("0.0.0.0", 1935, "live", "k1")
    assert spec.key_generated
    assert spec.ffmpeg_url == "rtmp://0.0.0.0:1935/live/k1"
    assert spec.display_url == "rtmp://0.0.0.0:1935/live"  # the key is a secret: not in logs
    assert spec.server_url("192.168.1.5") == "rtmp://192.168.1.5:1935/live"
    assert spec.format == "flv" and spec.options["listen"] == "1"


def test_listen_url_key_from_url_or_option() -> None:
    in_url = parse_listen_url("rtmp://127.0.0.1:1940/app/secret", available=RTMP_ONLY)
    assert (in_url.port, in_url.app, in_url.key, in_url.key_generated) == (
        1940,
        "app",
        "secret",
        False,
    )
    assert in_url.server_url("10.0.0.1") == "rtmp://127.0.0.1:1940/app"
    option = parse_listen_url("rtmp://127.0.0.1:1940/app/secret", "other", available=RTMP_ONLY)
    assert option.key == "other"


def test_generated_keys_are_random_and_url_safe() -> None:
    keys = {parse_listen_url("rtmp://h/live", available=RTMP_ONLY).key for _ in range(20)}
    assert len(keys) == 20
    assert all(len(k) >= 16 and k.replace("-", "").replace("_", "").isalnum() for k in keys)


@pytest.mark.parametrize(
    ("url", "key", "needle"),
    [
        ("http://0.0.0.0:1935/live", None, "unknown scheme"),
        ("rtmp://0.0.0.0:99999/live", None, "port"),
        ("rtmp://user:pw@0.0.0.0/live", None, "no user"),
        ("rtmp://0.0.0.0/li ve", None, "application name"),
        ("rtmp://0.0.0.0/live", "bad key!", "stream key"),
        ("srt://0.0.0.0:9000", None, "cannot receive srt"),
        ("whip://0.0.0.0:8443", None, "cannot receive whip"),
    ],
)
def test_bad_listen_urls_are_one_clear_error(url: str, key: str | None, needle: str) -> None:
    with pytest.raises(MediaError, match=needle):
        parse_listen_url(url, key, available=RTMP_ONLY)


def test_schemes_follow_the_ffmpeg_protocols() -> None:
    assert available_listen_schemes({"rtmp", "tcp"}) == ["rtmp"]
    assert available_listen_schemes({"tcp"}) == []
    assert "srt" in available_listen_schemes({"rtmp", "srt"})  # with libsrt, SRT listens too
    note = listen_support_note({"rtmp"})
    assert "rtmp yes" in note and "srt no" in note and "whip no" in note
    # This installation: PyAV's FFmpeg serves RTMP (the push tests below rely on it).
    assert "rtmp" in available_listen_schemes()


def test_wrong_key_is_read_from_ffmpegs_warning() -> None:
    logs = [(24, "rtmp", "Unexpected stream WRONG, expecting KEY\n")]
    assert wrong_key_in_logs(logs, "KEY") == "WRONG"
    assert wrong_key_in_logs([(24, "rtmp", "Unexpected stream KEY, expecting KEY")], "KEY") is None
    assert wrong_key_in_logs([(32, "flv", "something else")], "KEY") is None


def test_reconnect_offset_continues_after_the_pause() -> None:
    # The output reached 42 s; the new push starts its clock at 0 and came 5 s later.
    assert reconnect_offset_s(42.0, 0.0, 5.0) == 47.0
    # An encoder box that sends absolute timestamps (first at 1000 s) lands at the same place.
    assert 1000.0 + reconnect_offset_s(42.0, 1000.0, 5.0) == pytest.approx(47.0)


# -- the listener without a pusher -------------------------------------------------------------


def test_interrupt_ends_a_wait_for_a_push_at_once() -> None:
    spec = parse_listen_url(f"rtmp://127.0.0.1:{free_port()}/live", "KEY")
    listener = PushListener(spec)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            listener.accept()
        except BaseException as error:
            outcome.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.3)  # let FFmpeg start listening (the interrupt also works if it has not)
    started = time.monotonic()
    listener.interrupt()
    thread.join(5.0)
    assert not thread.is_alive()
    assert time.monotonic() - started < 3.0
    assert outcome and isinstance(outcome[0], ListenInterrupted)


def test_a_port_in_use_is_an_error_not_a_wait() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        listener = PushListener(parse_listen_url(f"rtmp://127.0.0.1:{port}/live", "KEY"))
        with pytest.raises(MediaError, match=r"cannot listen on rtmp://127\.0\.0\.1"):
            listener.accept()


def test_a_garbage_pusher_costs_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    listener = PushListener(parse_listen_url(f"rtmp://127.0.0.1:{port}/live", "KEY"))
    done = threading.Event()

    def wait() -> None:
        try:
            listener.accept()
        except ListenInterrupted:
            pass
        finally:
            done.set()

    thread = threading.Thread(target=wait)
    thread.start()
    deadline = time.monotonic() + 5
    sent = False
    while not sent and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"\x03" + bytes(range(256)) * 8)  # RTMP version byte, then junk
                sent = True
        except OSError:
            time.sleep(0.05)
    assert sent
    deadline = time.monotonic() + 5
    while not any("waiting for the next push" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "no warning about the bad push"
        time.sleep(0.05)
    assert not done.is_set()  # still waiting for a real encoder
    listener.interrupt()
    thread.join(5)
    assert done.is_set()


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--listen", "ftp://0.0.0.0/live"], "unknown scheme"),
        (["media.mp4", "--listen", "rtmp://127.0.0.1:1935/live"], "either an INPUT or --listen"),
        ([], "give an INPUT"),
        (["testsrc", "--stream-key", "k"], "--stream-key goes with --listen"),
        (["--listen", "rtmp://127.0.0.1:1935/live", "--loop"], "--loop"),
    ],
)
def test_broadcast_listen_arguments_are_checked_first(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(["broadcast", *args, "--port", "0", "--key", str(tmp_path / "k.key")])
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("streamer broadcast: error: ")
    assert needle in lines[0]


def test_help_says_which_push_protocols_work(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["broadcast", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--listen" in out and "rtmp yes" in out and "--stream-key" in out
    assert "--gop-limit" in out and "--transcode" in out


def test_chunks_held_back_by_an_outage_do_not_move_the_clock() -> None:
    from streamer.media.pacing import LiveSchedule

    schedule = LiveSchedule.starting_at(100.0)
    # A chunk of before the outage, ready 6 s after it was due: out at once, clock unmoved.
    assert schedule.delay_s(5.0, 1.0, now=112.0, may_resync=False) == 0.0
    assert schedule.anchor_s == 100.0 and schedule.resyncs == 0
    # The first chunk of the new push is due on the old clock.
    assert schedule.delay_s(14.0, 1.0, now=114.5) == pytest.approx(0.5)
    # A slow producer (no outage) still re-anchors.
    assert schedule.delay_s(20.0, 1.0, now=125.0) == 0.0
    assert schedule.resyncs == 1 and schedule.anchor_s == 104.0


def test_seqs_skip_what_an_encoder_outage_would_have_filled() -> None:
    from streamer.commands.broadcast import seq_after

    # No reconnect: one after the other, whatever the chunk lengths (long GOPs kept as they are).
    assert seq_after(100, 5.0, 6.0, 0.0, 1.0) == 101
    assert seq_after(100, 5.0, 8.0, 0.0, 1.0) == 101
    # The chunk before the outage started at 5 s; the new push's first chunk at 13 s (resumed at
    # 12.98 s): seqs 101-107 would have been played out meanwhile; viewers expect 108 now.
    assert seq_after(100, 5.0, 13.0, 12.98, 1.0) == 108
    # Later chunks of the new push: one after the other again.
    assert seq_after(108, 13.0, 14.0, 12.98, 1.0) == 109
    # 0.5 s chunks: twice as many seqs for the same outage.
    assert seq_after(100, 5.0, 13.0, 12.98, 0.5) == 116
