"""`streamer package` end to end: the package it writes, and a one-line error for each bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from media_helpers import ClipSpec, PartialHttpServer, decode_fmp4, make_clip

from streamer import cli

SAMPLE = Path(__file__).resolve().parent.parent / "media" / "sample.mp4"


@pytest.fixture(scope="module")
def ts_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cli") / "clip.ts", ClipSpec(duration_s=8.0))


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(args)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, err  # a status line may come first; the error is one line, last
    assert lines[-1] == errors[0] and errors[0].startswith("streamer package: error: ")
    for needle in needles:
        assert needle in errors[0]


def test_package_writes_init_chunks_and_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pkg"
    code, err = run_cli(["package", str(SAMPLE), "--out", str(out)], capsys)
    assert code == 0, err
    assert "wrote 24 chunks" in err.splitlines()[-1]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["codec"].startswith('video/mp4; codecs="avc1.64')
    assert manifest["init"] == "init.mp4"
    chunks = manifest["chunks"]
    assert [c["seq"] for c in chunks] == list(range(24))
    data = (out / "init.mp4").read_bytes()
    for entry in chunks:
        assert set(entry) >= {"seq", "file", "start_s", "duration_s", "size_bytes"}
        body = (out / entry["file"]).read_bytes()
        assert len(body) == entry["size_bytes"]
        data += body
    assert sum(c["duration_s"] for c in chunks) == pytest.approx(24.0, abs=0.03)
    decoded = decode_fmp4(data)
    assert decoded.video_frames == 720


def test_package_loop_with_duration_and_bitrate_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "loop"
    args = ["package", str(SAMPLE), "--out", str(out), "--loop", "--duration", "30"]
    code, err = run_cli([*args, "--video-bitrate", "800k", "--chunk-seconds", "2"], capsys)
    assert code == 0, err
    chunks = json.loads((out / "manifest.json").read_text())["chunks"]
    assert len(chunks) == 15
    starts = [c["start_s"] for c in chunks]
    assert starts == sorted(starts) and starts[12] == pytest.approx(24.0)


def test_loop_without_duration_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["package", str(SAMPLE), "--out", str(tmp_path), "--loop"], capsys)
    assert_one_line_error(code, err, "--duration")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["package", str(tmp_path / "nope.mp4"), "--out", str(tmp_path)], capsys)
    assert_one_line_error(code, err, "not found", "nope.mp4")


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    code, err = run_cli(["package", str(empty), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "empty")


def test_truncated_mp4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(SAMPLE.read_bytes()[:5000])  # moov cut in half
    code, err = run_cli(["package", str(cut), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "cut.mp4")


def test_corrupt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes((i * 7919) % 251 for i in range(64_000)))
    code, err = run_cli(["package", str(junk), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "junk.mp4", "corrupt")


def test_unsupported_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.mkv"
    text.write_text("this is a shopping list, not a film\n" * 50)
    code, err = run_cli(["package", str(text), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "notes.mkv")


def test_input_without_audio_or_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subtitles = tmp_path / "subs.srt"
    subtitles.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nHello\n\n2\n00:00:03,000 --> 00:00:04,000\nBye\n"
    )
    code, err = run_cli(["package", str(subtitles), "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err, "neither a video nor an audio stream")


def test_transcode_never_on_input_that_needs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = make_clip(tmp_path / "in.mkv", ClipSpec(video_codec="mpeg4", duration_s=1.0))
    args = ["package", str(clip), "--out", str(tmp_path / "o"), "--transcode", "never"]
    code, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--transcode never", "mpeg4")


def test_stalled_live_source_times_out(
    ts_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = ts_clip.read_bytes()
    with PartialHttpServer(body, send_bytes=len(body) * 3 // 4, mode="stall") as server:
        started = time.monotonic()
        args = ["package", server.url, "--out", str(tmp_path / "o"), "--timeout", "1"]
        code, err = run_cli(args, capsys)
        assert time.monotonic() - started < 10
    assert_one_line_error(code, err, "timed out", "stalled")


def test_live_source_that_stalls_before_any_media(
    ts_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with PartialHttpServer(ts_clip.read_bytes(), send_bytes=500, mode="stall") as server:
        args = ["package", server.url, "--out", str(tmp_path / "o"), "--timeout", "1"]
        code, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "timed out")


@pytest.mark.parametrize("fraction", [0.0, 0.75])
def test_live_source_that_dies(
    ts_clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fraction: float
) -> None:
    body = ts_clip.read_bytes()
    with PartialHttpServer(body, send_bytes=int(len(body) * fraction), mode="die") as server:
        args = ["package", server.url, "--out", str(tmp_path / "o"), "--timeout", "2"]
        code, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "127.0.0.1")


def test_unreachable_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with PartialHttpServer(b"", 0) as server:
        url = server.url
    code, err = run_cli(["package", url, "--out", str(tmp_path / "o"), "--timeout", "2"], capsys)
    assert_one_line_error(code, err, "127.0.0.1")


def test_output_directory_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_cli(["package", str(SAMPLE), "--out", str(blocker / "sub")], capsys)
    assert_one_line_error(code, err, "output directory")
