"""The media pipeline on real files made at test time: remux, transcode, late join, loop, pacing."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import pytest
from media_helpers import (
    ClipSpec,
    Decoded,
    PartialHttpServer,
    count_source,
    decode_fmp4,
    make_clip,
)

from streamer.media import Chunk, MediaError, MediaOptions, open_media
from streamer.media.boxes import iter_boxes, parse_init, parse_moof
from streamer.media.pacing import live_chunks

CLIPS: dict[str, ClipSpec] = {
    "h264_aac.mp4": ClipSpec(),
    "bframes.mp4": ClipSpec(bframes=2),
    "video_only.mp4": ClipSpec(audio_codec=None),
    "audio_only.m4a": ClipSpec(video_codec=None),
    "vp9_opus.webm": ClipSpec(video_codec="libvpx-vp9", audio_codec="libopus"),
    "hevc_aac.mkv": ClipSpec(video_codec="libx265"),
    "h264_mp3.mkv": ClipSpec(audio_codec="libmp3lame"),
    "long_gop.mp4": ClipSpec(gop_frames=90, duration_s=4.0),
    "half_gop.mp4": ClipSpec(gop_frames=15),
    "annexb.ts": ClipSpec(),
    "long.ts": ClipSpec(duration_s=8.0),
}

ClipMaker = Callable[[str], Path]
AAC_PRIMING_S = 0.022  # 1024 samples at 48 kHz, rounded up to the video timescale


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipMaker:
    """Build each test clip once per session, on first use."""
    folder = tmp_path_factory.mktemp("media_clips")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = make_clip(folder / name, CLIPS[name])
        return built[name]

    return get


def package(source: str | Path, **options: object) -> tuple[bytes, list[Chunk], object]:
    with open_media(str(source), MediaOptions(**options)) as stream:  # type: ignore[arg-type]
        chunks = list(stream.chunks())
        return stream.info.init_segment, chunks, stream.info


def whole(init: bytes, chunks: list[Chunk]) -> Decoded:
    return decode_fmp4(init + b"".join(c.data for c in chunks))


def first_samples_are_sync(init: bytes, chunk: Chunk) -> bool:
    info = parse_init(init)
    video = info.track_by_handler("vide")
    assert video is not None
    moof = next(b for b in iter_boxes(chunk.data) if b.type == b"moof")
    return parse_moof(chunk.data, moof, info).runs[video.track_id].first_sample_is_sync


def assert_contiguous(chunks: list[Chunk]) -> None:
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert chunks[0].start_s == 0.0
    for before, after in itertools.pairwise(chunks):
        assert after.start_s == pytest.approx(before.start_s + before.duration_s, abs=1e-6)


# -- remux -----------------------------------------------------------------------------------


def test_h264_aac_is_remuxed_frame_for_frame(clip: ClipMaker) -> None:
    source = clip("h264_aac.mp4")
    init, chunks, info = package(source)
    assert info.codecs.startswith("avc1.") and info.codecs.endswith(",mp4a.40.2")  # type: ignore[attr-defined]
    assert info.mime_type == f'video/mp4; codecs="{info.codecs}"'  # type: ignore[attr-defined]
    assert not info.video_transcoded and not info.audio_transcoded  # type: ignore[attr-defined]
    assert (info.width, info.height) == (160, 120)  # type: ignore[attr-defined]
    # The muxer lengthens the first video sample by the AAC priming (1024 samples) it shifts
    # everything by, so chunk 0 may be up to 21 ms longer; A/V sync is kept.
    assert [c.duration_s for c in chunks] == pytest.approx([1.0, 1.0, 1.0], abs=AAC_PRIMING_S)
    assert_contiguous(chunks)
    ours, theirs = whole(init, chunks), count_source(source)
    assert ours.video_frames == theirs.video_frames == 90
    assert ours.video_duration_s == pytest.approx(3.0, abs=AAC_PRIMING_S)
    assert abs(ours.audio_samples - theirs.audio_samples) <= 1024
    # Copying re-wraps the same bytes: nothing was re-encoded, so sizes stay close to the source.
    assert sum(c.size_bytes for c in chunks) < source.stat().st_size * 1.1


def test_every_chunk_starts_with_a_keyframe_and_decodes_alone(clip: ClipMaker) -> None:
    init, chunks, _ = package(clip("h264_aac.mp4"))
    for chunk in chunks:
        assert first_samples_are_sync(init, chunk)
        decoded = decode_fmp4(init + chunk.data)
        assert decoded.keyframe_first and decoded.video_frames == 30


def test_late_join_from_any_chunk_decodes(clip: ClipMaker) -> None:
    init, chunks, _ = package(clip("h264_aac.mp4"))
    for k in range(len(chunks)):
        decoded = whole(init, chunks[k:])
        assert decoded.keyframe_first
        assert decoded.video_frames == 30 * (len(chunks) - k)
        assert min(decoded.video_pts_s) == pytest.approx(chunks[k].start_s, abs=0.001)


def test_b_frames_are_remuxed_in_presentation_order(clip: ClipMaker) -> None:
    init, chunks, info = package(clip("bframes.mp4"))
    assert not info.video_transcoded  # type: ignore[attr-defined]
    decoded = whole(init, chunks)
    assert decoded.video_frames == 90
    assert sorted(decoded.video_pts_s) == decoded.video_pts_s  # decoder output order = display
    assert len(set(decoded.video_pts_s)) == 90
    for chunk in chunks:
        assert decode_fmp4(init + chunk.data).video_frames == 30


def test_gop_shorter_than_chunk_gives_multi_fragment_chunks(clip: ClipMaker) -> None:
    init, chunks, _ = package(clip("half_gop.mp4"))
    assert [c.duration_s for c in chunks] == pytest.approx([1.0, 1.0, 1.0], abs=AAC_PRIMING_S)
    for chunk in chunks:
        assert sum(1 for b in iter_boxes(chunk.data) if b.type == b"moof") == 2
    assert whole(init, chunks).video_frames == 90


def test_video_only(clip: ClipMaker) -> None:
    init, chunks, info = package(clip("video_only.mp4"))
    assert info.has_video and not info.has_audio  # type: ignore[attr-defined]
    assert "," not in info.codecs  # type: ignore[attr-defined]
    decoded = whole(init, chunks)
    assert decoded.video_frames == 90 and decoded.audio_samples == 0


def test_audio_only_is_cut_on_time(clip: ClipMaker) -> None:
    init, chunks, info = package(clip("audio_only.m4a"))
    assert not info.has_video and info.has_audio  # type: ignore[attr-defined]
    assert info.mime_type == 'audio/mp4; codecs="mp4a.40.2"'  # type: ignore[attr-defined]
    assert_contiguous(chunks)
    assert all(c.duration_s == pytest.approx(1.0, abs=0.05) for c in chunks[:-1])
    assert sum(c.duration_s for c in chunks) == pytest.approx(3.0, abs=0.05)
    decoded = whole(init, chunks)
    assert decoded.audio_samples == pytest.approx(3 * 48000, abs=2048)
    late = whole(init, chunks[1:])
    assert late.audio_samples > 0


def test_mpeg_ts_input_is_remuxed(clip: ClipMaker) -> None:
    """Annex B H.264 and ADTS AAC: the decoder config comes from the packets, not the header."""
    init, chunks, info = package(clip("annexb.ts"))
    assert not info.video_transcoded and not info.audio_transcoded  # type: ignore[attr-defined]
    assert info.codecs.endswith("mp4a.40.2")  # type: ignore[attr-defined]
    assert whole(init, chunks).video_frames == 90


# -- transcode -------------------------------------------------------------------------------


def assert_transcoded_clip(init: bytes, chunks: list[Chunk], frames: int) -> None:
    decoded = whole(init, chunks)
    assert decoded.video_frames == frames
    assert decoded.audio_samples > 0
    for chunk in chunks:
        assert first_samples_are_sync(init, chunk)
    assert all(c.duration_s == pytest.approx(1.0, abs=0.06) for c in chunks)


def test_vp9_opus_is_transcoded_to_h264_aac(clip: ClipMaker) -> None:
    init, chunks, info = package(clip("vp9_opus.webm"))
    assert info.video_transcoded and info.audio_transcoded  # type: ignore[attr-defined]
    assert info.source_video_codec == "vp9"  # type: ignore[attr-defined]
    assert info.codecs.startswith("avc1.64") and info.codecs.endswith("mp4a.40.2")  # type: ignore[attr-defined]
    assert len(chunks) == 3
    assert_transcoded_clip(init, chunks, 90)


def test_hevc_is_transcoded(clip: ClipMaker) -> None:
    if "libx265" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx265 encoder to make an HEVC input")
    init, chunks, info = package(clip("hevc_aac.mkv"))
    assert info.video_transcoded and not info.audio_transcoded  # type: ignore[attr-defined]
    assert_transcoded_clip(init, chunks, 90)


def test_mp3_audio_is_transcoded_video_copied(clip: ClipMaker) -> None:
    init, chunks, info = package(clip("h264_mp3.mkv"))
    assert not info.video_transcoded and info.audio_transcoded  # type: ignore[attr-defined]
    decoded = whole(init, chunks)
    assert decoded.video_frames == 90
    assert decoded.audio_samples == pytest.approx(3 * 48000, abs=3 * 1152)


def test_long_gop_h264_is_transcoded_to_chunk_sized_gops(clip: ClipMaker) -> None:
    init, chunks, info = package(clip("long_gop.mp4"))
    assert info.video_transcoded  # type: ignore[attr-defined]
    assert len(chunks) == 4
    assert_transcoded_clip(init, chunks, 120)
    # The same input with 3 s chunks fits its 3 s keyframe interval: copied.
    _, _, info3 = package(clip("long_gop.mp4"), chunk_seconds=3.0)
    assert not info3.video_transcoded  # type: ignore[attr-defined]


def test_transcode_always_respects_the_bitrate(clip: ClipMaker) -> None:
    init, chunks, info = package(
        clip("h264_aac.mp4"), transcode="always", video_bitrate_bps=100_000
    )
    assert info.video_transcoded and info.audio_transcoded  # type: ignore[attr-defined]
    assert_transcoded_clip(init, chunks, 90)
    video_and_audio_bits = 8 * sum(c.size_bytes for c in chunks)
    assert video_and_audio_bits < 3.0 * (100_000 + 128_000) * 1.5


def test_transcode_never_refuses_vp9(clip: ClipMaker) -> None:
    with pytest.raises(MediaError, match="--transcode never"):
        open_media(str(clip("vp9_opus.webm")), MediaOptions(transcode="never"))


def test_testsrc_synthetic_source() -> None:
    init, chunks, info = package("testsrc:192x108@30", duration_s=2.0)
    assert info.is_live and info.has_video and info.has_audio  # type: ignore[attr-defined]
    assert (info.width, info.height) == (192, 108)  # type: ignore[attr-defined]
    assert len(chunks) == 2
    assert whole(init, chunks).video_frames == 60


# -- loop ------------------------------------------------------------------------------------


def tfdts(init: bytes, chunks: list[Chunk], handler: str) -> list[tuple[int, int]]:
    """(tfdt, duration) of every fragment of one track, in its timescale."""
    info = parse_init(init)
    track = info.track_by_handler(handler)
    assert track is not None
    runs = []
    for chunk in chunks:
        for moof in (b for b in iter_boxes(chunk.data) if b.type == b"moof"):
            run = parse_moof(chunk.data, moof, info).runs.get(track.track_id)
            if run is not None:
                runs.append((run.base_decode_time, run.duration))
    return runs


@pytest.mark.parametrize("name", ["h264_aac.mp4", "vp9_opus.webm"])
def test_loop_keeps_time_increasing_without_gaps(clip: ClipMaker, name: str) -> None:
    init, chunks, _ = package(clip(name), loop=True, duration_s=7.0)
    assert len(chunks) == 7
    assert_contiguous(chunks)
    video_runs = tfdts(init, chunks, "vide")
    for (start, duration), (next_start, _) in itertools.pairwise(video_runs):
        assert next_start == start + duration  # tfdt: no reset, no gap, no overlap at the seams
    decoded = whole(init, chunks)
    assert decoded.video_frames == 210
    pts = decoded.video_pts_s
    steps = [b - a for a, b in itertools.pairwise(pts)]
    assert min(steps) > 0
    assert max(steps) < 2.1 / 30  # at most one frame (two for the first sample's priming shift)
    audio_runs = tfdts(init, chunks, "soun")
    assert all(b[0] > a[0] for a, b in itertools.pairwise(audio_runs))
    audio = decoded.audio_pts_s
    late_audio = [b - a for a, b in itertools.pairwise(audio) if a > 0.5]
    assert min(late_audio) > 0 and max(late_audio) < 0.07


def test_duration_limit_stops_a_file(clip: ClipMaker) -> None:
    _, chunks, _ = package(clip("h264_aac.mp4"), duration_s=2.0)
    assert len(chunks) == 2


# -- live pacing -----------------------------------------------------------------------------


async def test_live_chunks_are_released_on_the_wall_clock() -> None:
    stream = open_media("testsrc:96x64@20", MediaOptions(chunk_seconds=0.5, duration_s=1.5))
    started = time.monotonic()
    released: list[tuple[int, float]] = []
    async for chunk in live_chunks(stream):
        released.append((chunk.seq, time.monotonic() - started))
    assert [seq for seq, _ in released] == [0, 1, 2]
    for seq, at in released:
        # A chunk leaves when its end has been "shot": (seq + 1) * 0.5 s after the start.
        due = (seq + 1) * 0.5
        assert due - 0.05 <= at <= due + 0.4  # never early; late only by scheduling noise


def fast_clock() -> Callable[[], float]:
    """A clock that jumps 100 s per reading: every chunk is overdue, so nothing sleeps."""
    ticks = itertools.count(0, 100)
    return lambda: float(next(ticks))


async def test_live_chunks_stop_early_ends_the_worker(clip: ClipMaker) -> None:
    stream = open_media(str(clip("h264_aac.mp4")), MediaOptions(loop=True, chunk_seconds=1.0))
    async for chunk in live_chunks(stream, clock=fast_clock()):
        assert chunk.seq == 0
        break
    await asyncio.sleep(0)
    deadline = time.monotonic() + 5
    while any(t.name == "media-producer" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "producer thread did not stop"
        await asyncio.sleep(0.05)


async def test_live_chunks_raise_a_stalled_source_as_media_error(clip: ClipMaker) -> None:
    body = clip("long.ts").read_bytes()
    with PartialHttpServer(body, send_bytes=len(body) * 3 // 4, mode="stall") as server:
        stream = open_media(server.url, MediaOptions(read_timeout_s=1.0, open_timeout_s=2.0))
        received = []
        started = time.monotonic()
        with pytest.raises(MediaError, match="timed out"):
            async for chunk in live_chunks(stream, clock=fast_clock()):
                received.append(chunk)
        assert time.monotonic() - started < 10
        assert 2 <= len(received) <= 6  # what arrived before the stall was delivered
