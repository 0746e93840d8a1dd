"""Audio decoding: formats, resampling, mono mix-down, fixed windows for long clips, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

import omnivec
from omnivec import Limits, MediaError
from omnivec.media import load_audio, to_media
from omnivec.spaces.pooling import pool
from vectors import MAX_ABS_DIFF, assert_same_vectors

MODEL_SR = 48000   # the tiny CLAP feature extractor's rate


def dominant_hz(wave: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[int(spec.argmax())])


@pytest.mark.parametrize("fmt,mime", [("wav", "audio/wav"), ("flac", "audio/flac"), ("ogg", "audio/ogg"),
                                      ("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("m4a", "audio/mp4")])
def test_formats_decode_and_resample(audio_files, fmt, mime):
    media = to_media(audio_files[fmt])
    assert (media.modality, media.mime) == ("audio", mime)
    for rate in (MODEL_SR, 16000, 22050):
        wave = load_audio(media, rate)
        assert wave.dtype == np.float32 and wave.ndim == 1
        # 3 s of audio; lossy codecs may add up to a frame or two of padding (AAC: 1024 samples at 16 kHz).
        assert abs(len(wave) - 3.0 * rate) <= 0.05 * rate, (fmt, rate, len(wave))
        # The content survived: still a 440 Hz tone at amplitude 1/8 (ffmpeg's sine source), whatever the rate.
        assert abs(dominant_hz(wave, rate) - 440) < 3, (fmt, rate)
        assert 0.10 < float(np.abs(wave).max()) < 0.16


def test_lossless_formats_decode_to_the_same_samples(audio_files):
    wav = load_audio(to_media(audio_files["wav"]), 16000)
    flac = load_audio(to_media(audio_files["flac"]), 16000)
    assert len(wav) == 48000 and np.array_equal(wav, flac)


def test_speech_decodes_at_model_rate(speech_wav, tiny_clap):
    info = sf.info(str(speech_wav))
    assert info.samplerate != MODEL_SR
    wave = load_audio(to_media(speech_wav), MODEL_SR)
    assert abs(len(wave) - info.duration * MODEL_SR) <= 2
    assert float(np.abs(wave).max()) > 0.05            # speech, not silence
    res = tiny_clap.embed_items([speech_wav])[0]
    assert res.modality == "audio" and res.info["duration"] == pytest.approx(info.duration, abs=1e-4)


def test_stereo_is_mixed_to_mono(media_dir, gen):
    # Left: 440 Hz sine at amplitude 1/8, right: silence. A mix-down halves it; taking one channel would not.
    path = media_dir / "left_only.wav"
    gen.ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2",
               "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-filter_complex", "[0][1]amerge=inputs=2",
               "-t", "2", path)
    assert sf.info(str(path)).channels == 2
    stereo, _ = sf.read(str(path), dtype="float32")
    wave = load_audio(to_media(path), 16000)
    assert wave.shape == (32000,)
    assert np.allclose(wave, stereo.mean(axis=1), atol=1e-7)
    assert 0.055 < float(np.abs(wave).max()) < 0.07

    # Opposite channels cancel: proves both are used.
    left = stereo[:, 0]
    wave = load_audio(to_media((np.stack([left, -left], 1), 16000)), 16000)
    assert float(np.abs(wave).max()) < 1e-6

    # Through FFmpeg (AAC in MP4, which libsndfile cannot read): mono too, and mixed the same way (the mean, not
    # FFmpeg's -3 dB matrix), so the same sound has the same level whichever decoder reads it.
    m4a = media_dir / "left_only.m4a"
    gen.ffmpeg("-i", path, "-c:a", "aac", m4a)
    wave = load_audio(to_media(m4a), 16000)
    assert wave.ndim == 1 and abs(len(wave) - 32000) <= 1100
    rms = lambda w: float(np.sqrt(np.mean(w[2000:30000] ** 2)))  # noqa: E731 - skip codec start-up and tail
    assert rms(wave) == pytest.approx(rms(stereo.mean(axis=1)), rel=0.05)


def test_array_layouts_and_integer_pcm(media_dir, tiny_clap):
    rs = np.random.RandomState(0)
    pcm = (rs.randn(3 * 16000, 2) * 3000).astype(np.int16)
    path = media_dir / "pcm16_stereo.wav"
    sf.write(str(path), pcm, 16000, subtype="PCM_16")
    from_file = load_audio(to_media(path), 16000)
    # int16 arrays are scaled like libsndfile scales 16-bit files, so both give the same samples ...
    assert np.array_equal(load_audio(to_media((pcm, 16000)), 16000), from_file)
    # ... channels first (torchaudio's layout) as well as channels last ...
    assert np.array_equal(load_audio(to_media((np.ascontiguousarray(pcm.T), 16000)), 16000), from_file)
    # ... and the same vectors.
    a, b = tiny_clap.embed_audio([path, (pcm, 16000)])
    assert np.array_equal(a, b)
    # Unsigned 8-bit PCM is centred on 128.
    u8 = load_audio(to_media((np.array([0, 128, 255], np.uint8), 16000)), 16000)
    assert np.allclose(u8, [-1.0, 0.0, 127 / 128])
    with pytest.raises(MediaError, match="1-D or"):
        load_audio(to_media((np.zeros((2, 2, 100), np.float32), 16000)), 16000)


def test_long_clip_is_split_into_fixed_windows(long_wav, tiny_clap):
    res = tiny_clap.embed_items([long_wav])[0]
    assert res.modality == "audio" and res.space == tiny_clap.name
    assert res.info["duration"] == pytest.approx(25.0) and res.info["windows"] == 3
    assert [(s.start, s.end) for s in res.segments] == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    segs = np.stack([s.vector for s in res.segments])
    assert np.allclose(np.linalg.norm(segs, axis=1), 1.0, atol=1e-5)
    # The pooled vector is the duration-weighted mean of the windows, re-normalised.
    assert np.allclose(res.vector, pool(segs, [10, 10, 5]), atol=1e-6)
    # Windows hold different sound (300 / 900 / 2000 Hz), so their vectors differ.
    assert not np.allclose(segs[0], segs[1], atol=1e-3) and not np.allclose(segs[1], segs[2], atol=1e-3)
    # Window 1 embeds exactly seconds 10-20: the vector of that slice embedded alone, up to the float rounding
    # that a batch of one instead of three may change (tests/vectors.py); another slice would differ by far more.
    wave = load_audio(to_media(long_wav), MODEL_SR)
    alone = tiny_clap.embed_audio((wave[10 * MODEL_SR: 20 * MODEL_SR], MODEL_SR))[0]
    assert_same_vectors(alone, segs[1], "window 1 and its slice alone")
    shifted = tiny_clap.embed_audio((wave[10 * MODEL_SR + MODEL_SR // 2: 20 * MODEL_SR + MODEL_SR // 2], MODEL_SR))[0]
    assert np.abs(shifted - segs[1]).max() > 100 * MAX_ABS_DIFF   # the tolerance cannot hide a misplaced window


def test_same_file_twice_is_bit_identical(long_wav, tiny_clap):
    a, b = tiny_clap.embed_items([long_wav]), tiny_clap.embed_items([long_wav])
    assert np.array_equal(a[0].vector, b[0].vector)
    for sa, sb in zip(a[0].segments, b[0].segments):
        assert (sa.start, sa.end) == (sb.start, sb.end) and np.array_equal(sa.vector, sb.vector)


def test_short_tail_is_dropped_and_short_clip_is_one_window(tiny_clap):
    tone = (0.2 * np.sin(np.arange(int(20.5 * MODEL_SR)) * 2 * np.pi * 500 / MODEL_SR)).astype(np.float32)
    long, res = tiny_clap.embed_items([(tone, MODEL_SR), tone[: 2 * MODEL_SR]])   # 1-D: at the model's rate
    assert [(s.start, s.end) for s in long.segments] == [(0.0, 10.0), (10.0, 20.0)]   # 0.5 s < min_tail 1 s
    assert long.info["duration"] == pytest.approx(20.5)
    assert [(s.start, s.end) for s in res.segments] == [(0.0, 2.0)]
    assert res.info["duration"] == pytest.approx(2.0)


def test_audio_length_limit(long_wav, tiny_clap):
    space = omnivec.Space(tiny_clap.config, tiny_clap.backend, tiny_clap.version, limits=Limits(max_audio_seconds=20))
    out = space.embed_items([long_wav], on_error="return")[0]
    assert isinstance(out, MediaError) and out.stage == "limits" and out.item == str(long_wav)
    assert "25 s" in out.cause and "20 s" in out.cause


def test_audio_length_limit_through_ffmpeg(audio_files):
    # AAC in MP4 is decoded by PyAV; its limit error must stay a limits error.
    with pytest.raises(MediaError) as info:
        load_audio(to_media(audio_files["m4a"]), 16000, Limits(max_audio_seconds=1))
    assert info.value.stage == "limits" and "1 s" in info.value.cause
