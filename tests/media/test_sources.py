"""Inputs: paths, bytes, PIL images, numpy arrays, URLs (loopback only), and modality from content, not names."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import omnivec
from omnivec import Limits, MediaError
from omnivec.media import fetch_url, load_audio, load_image, sniff, to_media


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # urllib honours *_proxy variables; the loopback server must be reached directly.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def test_str_and_path(png_path):
    for item in (png_path, str(png_path)):
        media = to_media(item)
        assert (media.modality, media.mime, media.name, media.path) == ("image", "image/png", str(png_path), png_path)


def test_same_vector_from_path_bytes_pil_and_array(png_path, tiny_clip, gen):
    pil = Image.open(png_path)
    arr = gen.pattern(0)
    assert np.array_equal(np.asarray(pil.convert("RGB")), arr)
    ref = tiny_clip.embed_image(png_path)[0]
    for item in (str(png_path), png_path.read_bytes(), pil, arr, (arr / 255.0).astype(np.float32), arr / 255.0):
        assert np.array_equal(tiny_clip.embed([item])[0], ref), type(item)
    names = [r.item for r in tiny_clip.embed_items([png_path.read_bytes(), pil, arr])]
    assert names == ["<bytes #0>", "<image #1>", "<image #2>"]


def test_array_image_layouts(tiny_clip):
    grey = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    expected = np.repeat(grey[..., None], 3, axis=2)
    for item in (grey, grey[..., None], grey / 255.0):
        im = load_image(to_media(item))
        assert im.mode == "RGB" and np.abs(np.asarray(im, np.int32) - expected).max() == 0
    # Floats are clipped to [0, 1].
    assert np.asarray(load_image(to_media(np.full((4, 4, 3), 1.7)))).min() == 255
    with pytest.raises(MediaError, match="HxWx3"):
        load_image(to_media(np.zeros((8, 8, 5), np.uint8)))
    with pytest.raises(MediaError, match="uint8 or float"):
        load_image(to_media(np.zeros((8, 8, 3), np.int64)))
    with pytest.raises(MediaError, match="neither audio"):
        to_media(np.zeros((2, 8, 8, 3), np.uint8))


def test_audio_arrays(wav_path, tiny_clip, tiny_clap):
    wave = load_audio(to_media(wav_path), 48000)           # a 3 s 440 Hz tone at the model's rate
    assert len(wave) == 3 * 48000
    one_d = to_media(wave)
    assert (one_d.modality, one_d.sample_rate) == ("audio", None)      # 1-D: taken at the model's rate
    pair = to_media((wave, 48000))
    assert (pair.modality, pair.sample_rate) == ("audio", 48000)
    assert np.array_equal(load_audio(one_d, 48000), wave) and np.array_equal(load_audio(pair, 48000), wave)
    # Another rate is resampled: the tone stays at 440 Hz and 3 s.
    low = load_audio(to_media(wav_path), 16000)
    # One call (one model batch): the file, the bare array and the pair are the same input, so the same bits.
    out = tiny_clap.embed_items([wav_path, wave, (wave, 48000), (low, 16000)])
    assert [r.item for r in out] == [str(wav_path), "<audio #1>", "<audio #2>", "<audio #3>"]
    assert np.array_equal(out[1].vector, out[0].vector) and np.array_equal(out[2].vector, out[0].vector)
    assert out[3].info["duration"] == pytest.approx(3.0, abs=1e-3)
    assert float(out[3].vector @ out[0].vector) > 0.99
    # An audio pair is one item, not two (a vision space answers with one per-item error, without a model call).
    out = tiny_clip.embed_items((low, 16000), on_error="return")
    assert len(out) == 1 and out[0].stage == "modality" and out[0].item == "<audio #0>"


def test_text_strings_and_files(tmp_path):
    assert to_media("a photo of a cat").modality == "text"
    note = tmp_path / "note.txt"
    note.write_text("hello from a file")
    media = to_media(note)
    assert (media.modality, media.text) == ("text", "hello from a file")
    assert to_media(str(note), modality="text").text == str(note)   # forced text: the string itself


def test_modality_comes_from_content_not_name(media_dir, png_path, wav_path, tiny_clip, tiny_clap):
    disguised_png = media_dir / "photo.mp3"
    shutil.copy(png_path, disguised_png)
    disguised_wav = media_dir / "x.jpg"
    shutil.copy(wav_path, disguised_wav)
    assert (to_media(disguised_png).modality, to_media(disguised_png).mime) == ("image", "image/png")
    assert (to_media(disguised_wav).modality, to_media(disguised_wav).mime) == ("audio", "audio/wav")
    v = tiny_clip.embed([disguised_png, png_path])
    assert np.array_equal(v[0], v[1])
    v = tiny_clap.embed([disguised_wav, wav_path])
    assert np.array_equal(v[0], v[1])
    no_suffix = media_dir / "noextension"
    shutil.copy(wav_path, no_suffix)
    assert to_media(no_suffix).modality == "audio"


def test_sniff_every_generated_format(image_files, audio_files, video_20s, audio_only_mp4, media_dir, gen):
    expected = {image_files[f]: ("image", gen.IMAGE_FORMATS[f][2]) for f in image_files}
    expected.update({audio_files["wav"]: ("audio", "audio/wav"), audio_files["flac"]: ("audio", "audio/flac"),
                     audio_files["ogg"]: ("audio", "audio/ogg"), audio_files["mp3"]: ("audio", "audio/mpeg"),
                     audio_files["m4a"]: ("audio", "audio/mp4"), video_20s: ("video", "video/mp4"),
                     audio_only_mp4: ("video", "video/mp4")})
    raw_mp3 = media_dir / "noid3.mp3"       # an MP3 without an ID3 tag starts with a frame sync
    gen.ffmpeg("-i", audio_files["wav"], "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0", raw_mp3)
    expected[raw_mp3] = ("audio", "audio/mpeg")
    for path, kind in expected.items():
        assert sniff(path.read_bytes()[:256]) == kind, path.name
    assert sniff(b"") is None
    assert sniff(bytes(range(256))) is None                       # binary garbage
    assert sniff("héllo wörld".encode()[:2]) == ("text", "text/plain")
    assert sniff("ab€".encode()[:4]) == ("text", "text/plain")    # a character cut by the sample end


def _limited(space, **kw):
    return omnivec.Space(space.config, space.backend, space.version, limits=Limits(**kw))


def test_urls(http_server, png_path, wav_path, tiny_clip, tiny_clap):
    base, _ = http_server
    url = f"{base}/image.png"
    assert fetch_url(url) == png_path.read_bytes()
    media = to_media(url)
    assert (media.modality, media.name) == ("image", url)
    res = tiny_clip.embed_items([url])[0]
    assert res.item == url and np.array_equal(res.vector, tiny_clip.embed_image(png_path)[0])
    v = tiny_clap.embed([f"{base}/sound.wav", wav_path])
    assert np.array_equal(v[0], v[1])
    # Without Content-Length as well.
    assert fetch_url(f"{base}/stream/image.png") == png_path.read_bytes()


def test_url_errors(http_server, png_path, tiny_clip):
    base, _ = http_server
    size = png_path.stat().st_size
    with pytest.raises(MediaError) as info:
        to_media(f"{base}/missing.png")
    assert info.value.stage == "fetch" and "404" in info.value.cause and info.value.item == f"{base}/missing.png"

    # Size cap: from the declared length, and while streaming when there is none.
    cap = Limits(url_max_bytes=size - 1)
    for url in (f"{base}/image.png", f"{base}/stream/image.png"):
        with pytest.raises(MediaError) as info:
            fetch_url(url, cap)
        assert info.value.stage == "limits" and info.value.item == url and str(size - 1) in info.value.cause
    assert len(fetch_url(f"{base}/image.png", Limits(url_max_bytes=size))) == size
    out = _limited(tiny_clip, url_max_bytes=size - 1).embed_items([png_path, f"{base}/image.png"], on_error="return")
    assert isinstance(out[0], omnivec.Embedding) and isinstance(out[1], MediaError) and out[1].stage == "limits"

    # Timeout: the server answers after 3 s; the client gives up after 0.5 s.
    t0 = time.monotonic()
    out = _limited(tiny_clip, url_timeout=0.5).embed_items([f"{base}/slow"], on_error="return")[0]
    elapsed = time.monotonic() - t0
    assert isinstance(out, MediaError) and out.stage == "fetch" and out.item == f"{base}/slow"
    assert "timed out" in out.cause.lower()
    assert elapsed < 2.5

    # Unreachable: a closed loopback port.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MediaError) as info:
        fetch_url(f"http://127.0.0.1:{port}/x.png", Limits(url_timeout=2))
    assert info.value.stage == "fetch" and "refused" in info.value.cause.lower()


def test_unsupported_item_type():
    with pytest.raises(MediaError, match="unsupported input type dict"):
        to_media({"not": "media"}, index=4)
    try:
        to_media(3.5, index=2)
    except MediaError as e:
        assert e.item == "<item #2>" and e.stage == "sniff"
    else:
        pytest.fail("a float was accepted as media")


def test_size_limit_on_files_and_bytes(png_path):
    tight = Limits(max_bytes=100)
    for item, name in ((png_path, str(png_path)), (png_path.read_bytes(), "<bytes #0>")):
        with pytest.raises(MediaError) as info:
            to_media(item, limits=tight)
        assert info.value.stage == "limits" and info.value.item == name and "100" in info.value.cause


def test_relative_and_pathlike(png_path, monkeypatch):
    monkeypatch.chdir(png_path.parent)
    assert to_media(png_path.name).path == Path(png_path.name)

    class Custom(os.PathLike):
        def __fspath__(self):
            return str(png_path)

    assert to_media(Custom()).modality == "image"
