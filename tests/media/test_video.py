"""Video: frames sampled at the configured rate (with seeking), segments, blank-frame skipping, the sound track."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import omnivec
from omnivec import MediaError
from omnivec.media import sample_frames, to_media, video_duration
from omnivec.spaces.config import VideoOptions
from omnivec.spaces.pooling import pool


def with_video_options(space, **kw):
    config = dataclasses.replace(space.config, video=dataclasses.replace(space.config.video, **kw))
    return omnivec.Space(config, space.backend, space.version, audio_space=space.audio_space)


def expected_grey(second: float) -> float:
    return 20 + 10 * int(second)   # gen.timecoded_frame


def test_frames_sampled_at_the_configured_rate(video_20s, gen):
    media = to_media(video_20s)
    assert (media.modality, media.mime) == ("video", "video/mp4")
    assert video_duration(media) == pytest.approx(20.0, abs=0.05)
    for fps, times in [(1.0, [float(s) for s in range(20)]), (0.5, [float(s) for s in range(0, 20, 2)])]:
        frames = list(sample_frames(media, fps, min_size=32))
        assert [f.time for f in frames] == pytest.approx(times, abs=1e-6), fps
        for f in frames:   # each frame shows the second it claims to be from
            assert gen.grey_level(f.image) == pytest.approx(expected_grey(f.time), abs=6), f.time
    # Faster than the video's frame rate: the first frame at or after each sample time (10 fps -> 0.1 s grid).
    frames = list(sample_frames(media, 3.0, min_size=32))
    assert [f.time for f in frames][:7] == pytest.approx([0.0, 0.4, 0.7, 1.0, 1.4, 1.7, 2.0], abs=1e-6)
    assert len(frames) == 60


def test_seeking_at_low_rate_lands_on_the_right_frames(video_20s, gen):
    # 0.25 fps: one frame every 4 s, keyframes every 2.5 s, so sampling seeks instead of decoding everything.
    frames = list(sample_frames(to_media(video_20s), 0.25, min_size=32))
    assert [f.time for f in frames] == pytest.approx([0.0, 4.0, 8.0, 12.0, 16.0], abs=1e-6)
    assert [round(gen.grey_level(f.image)) for f in frames] == pytest.approx([20, 60, 100, 140, 180], abs=6)


def test_space_segments_at_low_rate(video_20s, tiny_clip):
    space = omnivec.Space(dataclasses.replace(tiny_clip.config, video=VideoOptions(fps=0.25)),
                          tiny_clip.backend, tiny_clip.version)
    res = space.embed_items([video_20s])[0]
    assert res.modality == "video" and res.info["frames"] == 5
    # Frames at 0, 4, 8, 12, 16 s in 5 s segments: 0-5 holds two frames, the others one each.
    assert [(s.start, s.end) for s in res.segments] == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, 20.0)]
    # With 1 s segments each segment is one frame, so the segment starts are the sample times.
    fine = with_video_options(space, segment_seconds=1.0).embed_items([video_20s])[0]
    assert [(s.start, s.end) for s in fine.segments] == [(0.0, 1.0), (4.0, 5.0), (8.0, 9.0), (12.0, 13.0), (16.0, 17.0)]
    # The 0-5 s segment pools the frames at 0 and 4 s.
    assert np.allclose(res.segments[0].vector, pool(np.stack([fine.segments[0].vector, fine.segments[1].vector])),
                       atol=1e-5)


def test_space_segments_and_pooled_vector(video_20s, tiny_clip):
    res = tiny_clip.embed_items([video_20s])[0]          # default: 1 fps, 5 s segments
    assert res.info["frames"] == 20 and res.info["duration"] == pytest.approx(20.0, abs=0.05)
    assert [(s.start, s.end) for s in res.segments] == [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0), (15.0, 20.0)]
    segs = np.stack([s.vector for s in res.segments])
    assert np.allclose(np.linalg.norm(segs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(res.vector, pool(segs, [5, 5, 5, 5]), atol=1e-6)
    assert not np.allclose(segs[0], segs[3], atol=1e-3)     # the picture changes over time
    again = tiny_clip.embed_items([video_20s])[0]
    assert np.array_equal(res.vector, again.vector)
    assert all(np.array_equal(a.vector, b.vector) for a, b in zip(res.segments, again.segments))


@pytest.fixture(scope="module")
def black_opening_videos(media_dir, gen):
    """Two videos: the same 10 s of black, then 2 s of different pictures (red checkerboard / blue-yellow stripes)."""
    black = np.zeros((gen.SIZE, gen.SIZE, 3), np.uint8)
    a = gen.checker(gen.SIZE, 16, (255, 0, 0), (255, 255, 255))
    yy = np.mgrid[0:gen.SIZE, 0:gen.SIZE][0]
    b = np.where(((yy // 4) % 2 == 0)[..., None], np.uint8([0, 0, 255]), np.uint8([255, 255, 0])).astype(np.uint8)
    fps = gen.VIDEO_FPS
    va = gen.write_video(media_dir / "black_then_a.mp4", [black] * (10 * fps) + [a] * (2 * fps))
    vb = gen.write_video(media_dir / "black_then_b.mp4", [black] * (10 * fps) + [b] * (2 * fps))
    return va, vb, a, b


def test_black_opening_does_not_make_videos_alike(black_opening_videos, tiny_clip):
    va, vb, a, b = black_opening_videos
    ra, rb = tiny_clip.embed_items([va, vb])
    assert ra.info["frames"] == 2 and rb.info["frames"] == 2      # the 10 black frames were skipped
    assert [(s.start, s.end) for s in ra.segments] == [(10.0, 12.0)]
    cos = float(ra.vector @ rb.vector)
    img_a, img_b = tiny_clip.embed_image([a, b])
    assert cos < 0.95, f"videos that differ after a black opening got near-identical vectors (cos {cos:.4f})"
    assert cos == pytest.approx(float(img_a @ img_b), abs=0.03)    # as different as their pictures are
    assert float(ra.vector @ img_a) > 0.99 and float(rb.vector @ img_b) > 0.99
    # Control: without skipping, the shared black frames dominate and the two videos look alike.
    noskip = with_video_options(tiny_clip, skip_blank=False)
    na, nb = noskip.embed_items([va, vb])
    assert na.info["frames"] == 12
    assert float(na.vector @ nb.vector) > cos + 0.05


def test_all_black_or_one_colour_videos_get_vectors(black_video, tiny_clip, media_dir, gen):
    # Black frames are skipped between scenes, but a video that is black throughout is still embedded (from its
    # first sampled frame): every video a user indexes gets a vector.
    res = tiny_clip.embed_items([black_video])[0]
    assert not isinstance(res, MediaError), res
    assert res.info["frames"] == 1 and np.isclose(np.linalg.norm(res.vector), 1.0, atol=1e-5)
    # Uniform colour is content, not a blank: flat grey, 6 s red then 6 s blue, a solid green. Each is embedded
    # from all its sampled frames, and red-then-blue's two segments are told apart.
    grey = gen.write_video(media_dir / "grey.mp4", [np.full((gen.SIZE, gen.SIZE, 3), 128, np.uint8)] * 20)
    solid = lambda rgb, n: [np.full((gen.SIZE, gen.SIZE, 3), rgb, np.uint8)] * n   # noqa: E731
    fps = 10
    red_blue = gen.write_video(media_dir / "red_then_blue_solid.mp4", solid((220, 30, 30), 6 * fps)
                               + solid((35, 75, 225), 6 * fps), fps=fps)
    green = gen.write_video(media_dir / "green_solid.mp4", solid((30, 170, 60), 3 * fps), fps=fps)
    out = tiny_clip.embed_items([grey, red_blue, green], on_error="return")
    assert not any(isinstance(o, MediaError) for o in out), out
    assert [o.info["frames"] for o in out] == [2, 12, 3]
    first, last = out[1].segments[0].vector, out[1].segments[-1].vector
    assert float(first @ last) < 0.999, "red and blue segments got the same vector"
    # Dark frames with something in them are content too; only dark and flat is black.
    from omnivec.media.video import is_blank

    dark = np.zeros((32, 32), np.uint8)
    assert is_blank(dark) and is_blank(dark + 10)
    dark[8:24, 8:24] = 60                         # a dim shape on black: mean 15, but not flat
    assert not is_blank(dark)
    assert not is_blank(np.full((32, 32), 87, np.uint8))    # a red screen in grey


@pytest.fixture(scope="module")
def av_space(tiny_clip_dir, tiny_clap):
    return omnivec.load_space(str(tiny_clip_dir), audio_space=tiny_clap)


def test_sound_track_is_embedded_by_the_audio_space(av_space, tiny_clip, tiny_clap, video_with_sound, silent_video):
    res, silent = av_space.embed_items([video_with_sound, silent_video])
    assert res.modality == "video" and res.space == av_space.name
    audio = res.audio
    assert isinstance(audio, omnivec.Embedding)
    assert audio.modality == "audio" and audio.space == tiny_clap.name and audio.model == tiny_clap.model
    assert audio.item == str(video_with_sound)
    assert audio.info["duration"] == pytest.approx(4.0, abs=0.1)
    assert audio.vector.shape == (tiny_clap.dim,) and np.isclose(np.linalg.norm(audio.vector), 1.0, atol=1e-5)
    assert not np.allclose(audio.vector, tiny_clap.embed_audio(np.zeros(4 * 48000, np.float32))[0], atol=1e-3)
    # The picture vectors do not depend on the sound.
    assert silent.audio is None and "audio_error" not in silent.info
    assert np.array_equal(res.vector, av_space.embed_items([video_with_sound])[0].vector)
    # A space without an audio companion ignores the sound track.
    assert tiny_clip.embed_items([video_with_sound])[0].audio is None


def test_video_without_video_stream(audio_only_mp4, tiny_clip):
    media = to_media(audio_only_mp4)
    assert media.modality == "video"         # MP4 (isom brand) cannot be told apart from its first bytes
    out = tiny_clip.embed_items([audio_only_mp4], on_error="return")[0]
    assert isinstance(out, MediaError) and out.item == str(audio_only_mp4)
    assert out.stage == "decode" and "no video stream" in out.cause


@pytest.mark.parametrize("suffix,vcodec,mime", [
    (".mkv", ("-c:v", "mpeg4", "-q:v", "3"), "video/x-matroska"),
    (".avi", ("-c:v", "mpeg4", "-q:v", "3"), "video/x-msvideo"),
    (".ogv", ("-c:v", "libtheora", "-q:v", "7"), "video/ogg"),
])
def test_other_containers(media_dir, gen, suffix, vcodec, mime):
    frames = [gen.timecoded_frame(i // gen.VIDEO_FPS) for i in range(3 * gen.VIDEO_FPS)]
    path = gen.write_video(media_dir / f"timecoded3{suffix}", frames, vcodec=vcodec)
    media = to_media(path)
    assert (media.modality, media.mime) == ("video", mime)
    got = list(sample_frames(media, 1.0, min_size=32))
    assert [f.time for f in got] == pytest.approx([0.0, 1.0, 2.0], abs=1e-6)
    assert [gen.grey_level(f.image) for f in got] == pytest.approx([20, 30, 40], abs=6)


def test_frames_are_scaled_down_never_up(media_dir, gen):
    big = [np.kron(gen.timecoded_frame(0), np.ones((4, 4, 1), np.uint8))] * 10     # 256x256
    path = gen.write_video(media_dir / "big256.mp4", big)
    assert list(sample_frames(to_media(path), 1.0, min_size=64))[0].image.size == (64, 64)
    assert list(sample_frames(to_media(path), 1.0, min_size=512))[0].image.size == (256, 256)
