"""The GOP watcher on real files made here: inputs whose keyframes turn irregular or far apart
after the probe are re-split at forced keyframes (auto) or kept with a warning (never)."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from media_helpers import ClipSpec, decode_fmp4, keyframe_times, make_clip, variable_gop_times

from streamer.media import Chunk, MediaOptions, open_media

SHORT_THEN_LONG = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 9.0, 12.0)  # 3 s GOPs after 6 s
SCENE_CUTS = (0, 0.4, 1.1, 1.3, 2.0, 2.9, 4.2, 4.5, 6.0, 7.7, 8.1, 9.9, 11.0)  # GOPs 0.2-1.8 s
CLIPS: dict[str, ClipSpec] = {
    "turns_long.mp4": ClipSpec(duration_s=14.0, keyframes_s=SHORT_THEN_LONG),
    "turns_long_bframes.mp4": ClipSpec(duration_s=14.0, bframes=2, keyframes_s=SHORT_THEN_LONG),
    "turns_two_s.mp4": ClipSpec(duration_s=12.0, keyframes_s=(0, 1, 2, 3, 4, 5, 6, 8, 10)),
    "long_10s.mp4": ClipSpec(duration_s=14.0, keyframes_s=(0.0, 1.0, 2.0, 3.0, 4.0)),
    "variable_1_8s.mp4": ClipSpec(
        duration_s=30.0, keyframes_s=(0.0, 1.0, 2.0, 3.0, *variable_gop_times(30.0, 5)[1:])
    ),
    "scene_cuts.mp4": ClipSpec(duration_s=12.0, keyframes_s=SCENE_CUTS),
}
ClipMaker = Callable[[str], Path]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> ClipMaker:
    folder = tmp_path_factory.mktemp("gop_clips")
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = make_clip(folder / name, CLIPS[name])
        return built[name]

    return get


def package(path: Path, **options: object) -> tuple[bytes, list[Chunk], str | None, float | None]:
    with open_media(str(path), MediaOptions(**options)) as stream:  # type: ignore[arg-type]
        chunks = list(stream.chunks())
        return stream.info.init_segment, chunks, stream.gop_action, stream.longest_gop_s


def assert_playable(
    init: bytes, chunks: list[Chunk], frames: int, duration_s: float, passes: int = 1
) -> None:
    """Every chunk opens on a keyframe and decodes alone; nothing lost; time only increases."""
    for chunk in chunks:
        assert decode_fmp4(init + chunk.data).keyframe_first, chunk.seq
    whole = decode_fmp4(init + b"".join(c.data for c in chunks))
    assert whole.video_frames == frames
    # AAC priming: about one frame of 1024 samples per pass over the file.
    assert whole.audio_samples == pytest.approx(duration_s * 48000, abs=2048 * passes)
    pts = sorted(whole.video_pts_s)
    assert all(b > a for a, b in itertools.pairwise(pts))
    for before, after in itertools.pairwise(chunks):
        assert after.start_s == pytest.approx(before.start_s + before.duration_s, abs=0.08)


def test_the_clips_have_the_keyframes_asked_for(clip: ClipMaker) -> None:
    times = keyframe_times(clip("turns_long.mp4"))
    assert times == pytest.approx(list(SHORT_THEN_LONG), abs=0.001)


@pytest.mark.parametrize("name", ["turns_long.mp4", "turns_long_bframes.mp4", "long_10s.mp4"])
def test_a_gop_turning_long_after_the_probe_is_resplit(
    clip: ClipMaker, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streamer.media.pipeline"):
        init, chunks, action, _ = package(clip(name))
    assert action == "switch"
    warnings = [r for r in caplog.records if "re-encoding video" in r.getMessage()]
    assert len(warnings) == 1
    # Copied 1 s chunks first, then 1 s chunks cut at forced keyframes: no chunk is long (the
    # copied keyframe of the long GOP joins the first re-encoded chunk: a few frames more).
    assert len(chunks) == 14
    assert max(c.duration_s for c in chunks) < 1.15
    assert_playable(init, chunks, 14 * 30, 14.0)


def test_a_looped_file_that_turns_long_keeps_time_increasing(clip: ClipMaker) -> None:
    init, chunks, action, _ = package(clip("turns_long.mp4"), loop=True, duration_s=35.0)
    assert action == "switch"
    assert max(c.duration_s for c in chunks) < 1.15
    assert sum(c.duration_s for c in chunks) == pytest.approx(35.0, abs=0.1)
    assert_playable(init, chunks, 35 * 30, 35.0, passes=3)


def test_a_gop_within_the_limit_is_copied(clip: ClipMaker) -> None:
    init, chunks, action, longest_s = package(clip("turns_two_s.mp4"))
    assert action is None and longest_s == pytest.approx(2.0, abs=0.04)
    assert [round(c.duration_s) for c in chunks] == [1, 1, 1, 1, 1, 1, 2, 2, 2]
    assert_playable(init, chunks, 12 * 30, 12.0)
    # A tighter limit re-encodes it.
    _, chunks1, action1, _ = package(clip("turns_two_s.mp4"), gop_limit_s=1.0)
    assert action1 == "switch" and max(c.duration_s for c in chunks1) < 1.1


def test_variable_gops_from_one_to_eight_seconds(clip: ClipMaker) -> None:
    init, chunks, action, _ = package(clip("variable_1_8s.mp4"))
    assert action == "switch"
    assert max(c.duration_s for c in chunks) <= 2.0 + 0.04
    assert_playable(init, chunks, 30 * 30, 30.0)


def test_irregular_scene_cut_keyframes_are_copied(clip: ClipMaker) -> None:
    init, chunks, action, longest_s = package(clip("scene_cuts.mp4"))
    assert action is None and longest_s == pytest.approx(1.8, abs=0.04)
    # Chunks gather whole GOPs until they are about a chunk long: a short GOP and a long one
    # that follows it share a chunk.
    assert all(c.duration_s >= 0.9 for c in chunks[:-1])
    assert max(c.duration_s for c in chunks) <= 0.9 + 1.8 + 0.04
    assert_playable(init, chunks, 12 * 30, 12.0)


def test_transcode_never_keeps_long_chunks_and_says_what_it_costs(
    clip: ClipMaker, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streamer.media.pipeline"):
        init, chunks, action, longest_s = package(clip("turns_long.mp4"), transcode="never")
    assert action == "keep" and longest_s == pytest.approx(3.0, abs=0.04)
    warnings = [r.getMessage() for r in caplog.records if "--transcode never" in r.getMessage()]
    assert len(warnings) == 1 and "lag" in warnings[0]
    assert [round(c.duration_s) for c in chunks] == [1, 1, 1, 1, 1, 1, 3, 3, 2]
    assert_playable(init, chunks, 14 * 30, 14.0)
