"""Image decoding: every format, animated first frame, EXIF orientation, alpha, reduced-size decode, bombs."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

import omnivec
from omnivec import Limits, MediaError
from omnivec.media import load_image, to_media
from vectors import assert_same_vectors

SIZE = 64  # conftest.SIZE
FORMATS = ["jpeg", "png", "webp", "gif", "bmp", "tiff"]   # conftest.IMAGE_FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_decodes_to_the_same_pixels(image_files, gen, fmt):
    suffix, _, mime, lossless = gen.IMAGE_FORMATS[fmt]
    media = to_media(image_files[fmt])
    assert (media.modality, media.mime) == ("image", mime)
    im = load_image(media)
    assert im.mode == "RGB" and im.size == (SIZE, SIZE)
    diff = np.abs(np.asarray(im, np.int32) - gen.pattern(0).astype(np.int32))
    if lossless:
        assert diff.max() == 0, f"{fmt} is lossless but decoded pixels differ by up to {diff.max()}"
    else:  # JPEG q95 and the 256-colour GIF palette stay close to the source
        assert diff.mean() < 12, f"{fmt} decoded far from the source (mean abs diff {diff.mean():.1f})"


def test_every_format_embeds(tiny_clip, image_files, gen):
    assert sorted(gen.IMAGE_FORMATS) == sorted(FORMATS)
    results = tiny_clip.embed_items([image_files[f] for f in FORMATS])
    for fmt, res in zip(FORMATS, results):
        assert res.modality == "image" and res.item == str(image_files[fmt])
        assert res.info["mime"] == gen.IMAGE_FORMATS[fmt][2]
        assert np.isclose(np.linalg.norm(res.vector), 1.0, atol=1e-5)
    # Lossless formats decode to identical pixels, so (embedded one at a time) to identical vectors.
    single = {f: tiny_clip.embed_image(image_files[f])[0] for f in ("png", "bmp", "tiff", "webp")}
    for f in ("bmp", "tiff", "webp"):
        assert np.array_equal(single["png"], single[f]), f
    # ... and a lossy one is close but not the same input.
    jpeg = tiny_clip.embed_image(image_files["jpeg"])[0]
    assert float(jpeg @ single["png"]) > 0.95


@pytest.mark.parametrize("fmt,kw", [("gif", {"duration": 100, "loop": 0}),
                                    ("webp", {"duration": 100, "loop": 0, "lossless": True}),
                                    ("tiff", {})])
def test_animated_first_frame_is_used(media_dir, fmt, kw):
    red, blue, green = (Image.new("RGB", (SIZE, SIZE), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)])
    path = media_dir / f"animated.{fmt}"
    red.save(path, save_all=True, append_images=[blue, green], **kw)
    assert Image.open(path).n_frames == 3
    im = load_image(to_media(path))
    assert im.size == (SIZE, SIZE)
    assert np.abs(np.asarray(im, np.int32) - (255, 0, 0)).max() <= 2, "not the first (red) frame"


def _half_red_half_blue_jpeg(path, width, height, orientation):
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2] = (255, 0, 0)
    a[:, width // 2:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, exif=exif.tobytes(), quality=95)
    return path


def test_exif_orientation_is_applied(media_dir, tiny_clip):
    # Stored 64 wide x 32 high, left half red; orientation 6 = "rotate 90 degrees clockwise to display",
    # so the displayed image is 32 wide x 64 high with the red half on top.
    path = _half_red_half_blue_jpeg(media_dir / "orient6.jpg", 64, 32, orientation=6)
    stored = Image.open(path)
    assert stored.size == (64, 32) and stored.getexif()[0x0112] == 6
    for min_size in (None, 8):  # full decode, and reduced-size (draft) decode
        im = load_image(to_media(path), min_size=min_size)
        w, h = im.size
        assert h == 2 * w and (w == 32 or min_size), im.size
        a = np.asarray(im, np.int32)
        top, bottom = a[: h // 2 - 2].mean(axis=(0, 1)), a[h // 2 + 2:].mean(axis=(0, 1))
        assert top[0] > 200 and top[2] < 60, f"top should be red, got {top}"
        assert bottom[2] > 200 and bottom[0] < 60, f"bottom should be blue, got {bottom}"
    res = tiny_clip.embed_items([path])[0]
    assert (res.info["width"], res.info["height"]) == (32, 64)
    # The vector is that of the upright image, not of the stored one.
    upright = np.zeros((64, 32, 3), np.uint8)
    upright[:32] = (255, 0, 0)
    upright[32:] = (0, 0, 255)
    stored_vec = tiny_clip.embed_image(np.asarray(stored.convert("RGB")))[0]
    upright_vec = tiny_clip.embed_image(upright)[0]
    assert float(res.vector @ upright_vec) > float(res.vector @ stored_vec)


def test_alpha_is_flattened_onto_white(media_dir, tiny_clip):
    rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
    rgba[..., 0] = 255                      # red colour values, fully transparent
    path = media_dir / "transparent_red.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert np.asarray(Image.open(path))[0, 0].tolist() == [255, 0, 0, 0]   # the red really is in the file
    assert np.asarray(load_image(to_media(path))).min() == 255            # ... and does not come out

    half = rgba.copy()
    half[..., 3] = 128                       # half-transparent red over white is pink
    px = np.asarray(load_image(to_media(Image.fromarray(half, "RGBA"))), np.int32)[0, 0]
    assert px[0] == 255 and 120 <= px[1] <= 135 and 120 <= px[2] <= 135, px

    white = np.full((SIZE, SIZE, 3), 255, np.uint8)
    assert np.asarray(load_image(to_media(rgba))).min() == 255             # an HxWx4 array too
    v_file, v_white = tiny_clip.embed_image(path)[0], tiny_clip.embed_image(white)[0]
    assert np.array_equal(v_file, v_white)

    # A palette image with a transparent index (GIF transparency) is flattened the same way.
    pal = Image.new("P", (SIZE, SIZE), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    gif = media_dir / "transparent.gif"
    pal.save(gif, transparency=1)
    assert np.asarray(load_image(to_media(gif))).min() == 255

    la = Image.fromarray(np.stack([np.zeros((SIZE, SIZE), np.uint8)] * 2, -1), "LA")   # black, transparent
    assert np.asarray(load_image(to_media(la))).min() == 255


@pytest.mark.parametrize("size", [(4000, 3000), (3000, 4000)])
def test_large_jpeg_is_decoded_at_reduced_size(big_jpeg, media_dir, size):
    path = big_jpeg
    if size != (4000, 3000):
        path = media_dir / "big_portrait.jpg"
        if not path.exists():
            Image.open(big_jpeg).transpose(Image.Transpose.ROTATE_90).save(path, quality=85)
    media = to_media(path)
    reduced = load_image(media, min_size=224)
    full = load_image(media)
    assert full.size == size
    # libjpeg's DCT scaling (1/8 here) keeps the short side >= 224 but decodes only a fraction of the pixels.
    assert min(reduced.size) >= 224
    assert max(reduced.size) <= max(size) // 4
    assert reduced.size[0] * full.size[1] == reduced.size[1] * full.size[0]   # aspect ratio kept
    # Same picture: the reduced decode matches the full decode scaled down.
    scaled = np.asarray(full.resize(reduced.size, Image.BOX), np.float64)
    assert np.abs(np.asarray(reduced, np.float64) - scaled).mean() < 6


def test_space_uses_reduced_decode(big_jpeg, tiny_clip):
    res = tiny_clip.embed_items([big_jpeg])[0]
    # tiny_clip needs 32 px; the largest libjpeg reduction is 1/8: 500x375, still over 4x the need, so 5x5 blocks
    # are then averaged (shrink) to 100x75. The record keeps the file's size.
    assert (res.info["width"], res.info["height"]) == (4000, 3000)
    assert res.info["decoded_size"] == [100, 75]
    assert load_image(to_media(big_jpeg), min_size=32).size == (100, 75)
    assert load_image(to_media(big_jpeg), min_size=224).size == (500, 375)   # a real CLIP's 224: libjpeg alone


@pytest.mark.parametrize("fmt", ["png", "webp", "array"])
def test_large_non_jpeg_is_box_reduced_before_the_processor(media_dir, tiny_clip, fmt):
    yy, xx = np.mgrid[0:700, 0:1000]
    arr = np.stack([xx * 255 // 1000, yy * 255 // 700, (xx + yy) * 255 // 1700], -1).astype(np.uint8)
    arr[200:500, 300:700] = (220, 30, 30)
    arr = np.clip(arr + np.random.default_rng(5).normal(0, 6, arr.shape), 0, 255).astype(np.uint8)
    item = arr if fmt == "array" else media_dir / f"big_{fmt}.{fmt}"
    if fmt != "array":
        Image.fromarray(arr).save(item, **({"lossless": True} if fmt == "webp" else {}))
    # tiny_clip needs 32 px: 700 // 64 = 10, so 10x10 blocks are averaged and the short side stays >= 64.
    reduced, full = load_image(to_media(item), min_size=32), load_image(to_media(item))
    assert full.size == (1000, 700) and reduced.size == (100, 70)
    box = np.asarray(full.resize((100, 70), Image.BOX), np.float64)     # the same as averaging 10x10 blocks
    assert np.abs(np.asarray(reduced, np.float64) - box).max() <= 1
    assert load_image(to_media(arr[:127, :300]), min_size=32).size == (300, 127)   # under 4x the need: untouched

    res = tiny_clip.embed_items([item])[0]
    assert (res.info["width"], res.info["height"]) == (1000, 700)                # the record describes the input
    assert res.info["decoded_size"] == [100, 70]
    exact = omnivec.load_space(tiny_clip.source, overrides={"image": {"reduced_decode": False}}).embed_image([item])[0]
    assert float(res.vector @ exact) > 0.99


def _forbid_decoding(monkeypatch):
    def boom(self, *a, **k):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)


def test_png_bomb_rejected_before_decoding(png_bomb_file, tiny_clip, monkeypatch):
    assert png_bomb_file.stat().st_size < 200_000          # a small file ...
    _forbid_decoding(monkeypatch)
    with pytest.raises(MediaError) as info:
        load_image(to_media(png_bomb_file))
    e = info.value
    assert e.stage == "limits" and e.item == str(png_bomb_file)
    assert "decompression bomb" in str(e) and str(png_bomb_file) in str(e)
    assert "400000000" in str(e)                             # ... that claims 20000 x 20000 pixels
    with pytest.raises(MediaError, match="decompression bomb") as info:
        tiny_clip.embed_image(png_bomb_file)
    assert info.value.stage == "limits"


def test_gif_bomb_rejected_before_decoding(gif_bomb_file, monkeypatch):
    assert gif_bomb_file.stat().st_size < 100
    _forbid_decoding(monkeypatch)
    with pytest.raises(MediaError) as info:
        load_image(to_media(gif_bomb_file))
    assert info.value.stage == "limits" and info.value.item == str(gif_bomb_file)
    assert "decompression bomb" in str(info.value) and str(gif_bomb_file) in str(info.value)


def test_bomb_under_pils_hard_limit_is_rejected_by_omnivecs_own_check(media_dir, gen, monkeypatch):
    # 10000 x 10000 = 1e8 pixels: above the default max_pixels (89,478,485) but below the 2x ceiling at which PIL
    # itself raises, so omnivec's header check is what stops it.
    path = gen.png_bomb(media_dir / "bomb_1e8.png", 10000, 10000)
    _forbid_decoding(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(MediaError) as info:
            load_image(to_media(path))
    assert info.value.stage == "limits"
    assert "decompression bomb" in str(info.value) and "10000x10000" in str(info.value)
    assert str(path) in str(info.value)


def test_custom_max_pixels(png_path, tiny_clip, gen):
    tight = Limits(max_pixels=SIZE * SIZE - 1)
    with pytest.raises(MediaError) as info:
        load_image(to_media(png_path), tight)
    assert info.value.stage == "limits" and "decompression bomb" in str(info.value)
    assert f"{SIZE}x{SIZE}" in str(info.value) and str(SIZE * SIZE - 1) in str(info.value)
    assert load_image(to_media(png_path), Limits(max_pixels=SIZE * SIZE)).size == (SIZE, SIZE)
    # In-memory images and arrays obey the limit too.
    for obj in (Image.open(png_path), gen.pattern(0)):
        with pytest.raises(MediaError, match="decompression bomb"):
            load_image(to_media(obj), tight)
    # A space built with the limit applies it per item.
    space = omnivec.Space(tiny_clip.config, tiny_clip.backend, tiny_clip.version, limits=tight)
    small = np.zeros((8, 8, 3), np.uint8) + 100
    out = space.embed_items([small, png_path], on_error="return")
    assert isinstance(out[0], omnivec.Embedding)
    assert isinstance(out[1], MediaError) and out[1].stage == "limits" and out[1].item == str(png_path)


def test_truncated_jpeg_is_a_decode_error(jpeg_path, media_dir):
    data = jpeg_path.read_bytes()
    path = media_dir / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError) as info:
        load_image(to_media(path))
    assert info.value.stage == "decode" and info.value.item == str(path)
    assert "truncated" in info.value.cause


def test_same_image_same_bits(png_path, tiny_clip):
    a = tiny_clip.embed_image(png_path)[0]
    b = tiny_clip.embed_image(png_path)[0]
    c = tiny_clip.embed_image(png_path.read_bytes())[0]
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_image_alone_and_in_a_batch_are_the_same_vector(png_path, other_pngs, tiny_clip):
    # Batch composition must not change the vector beyond float rounding: the image alone (batch of 1), third in a
    # batch of 6, and first in another order. The kernels a batch's shape selects differ in the last bits on some
    # CPUs (AMD EPYC without AMX: 1.2e-7), so the promise is tests/vectors.py's tolerance, not the bits.
    alone = tiny_clip.embed_image(png_path)[0]
    batch = tiny_clip.embed_image(other_pngs[:2] + [png_path] + other_pngs[2:])
    assert not np.allclose(batch[0], alone, atol=1e-2)       # the companions are different images
    assert_same_vectors(batch[2], alone, "alone and third in a batch")
    reordered = tiny_clip.embed_image([png_path] + other_pngs[::-1])
    assert_same_vectors(reordered[0], alone, "alone and first in a batch")
