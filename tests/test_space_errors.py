"""Per-item errors through the Space API: every broken or hostile input is a MediaError that names the item and
the cause; in a batch with on_error="return" it takes its own place and the good items still get vectors."""
from __future__ import annotations

import io
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

import omnivec
from omnivec import MediaError, ModalityError


# ---- broken and hostile inputs -------------------------------------------------------------------------------------
def _ffmpeg(*args, stdin: bytes | None = None) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed; it is needed to generate the video test files")
    subprocess.run([exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True,
                   input=stdin, capture_output=True)


def _image(seed: int) -> np.ndarray:
    rs = np.random.RandomState(seed)
    y, x = np.mgrid[0:64, 0:64]
    img = np.stack([x * 4, y * 4, (x + y) * 2], -1) + rs.randint(0, 60, (64, 64, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _png_bomb(path: Path, side: int = 20000) -> Path:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    z = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)
    idat = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("broken")
    f: dict[str, Path] = {}
    for i in range(3):
        f[f"good{i}"] = d / f"good{i}.png"
        Image.fromarray(_image(i)).save(f[f"good{i}"])
    f["jpeg"] = d / "good.jpg"
    Image.fromarray(_image(7)).save(f["jpeg"], quality=90)
    f["truncated_jpeg"] = d / "truncated.jpg"
    f["truncated_jpeg"].write_bytes(f["jpeg"].read_bytes()[: f["jpeg"].stat().st_size // 2])
    f["empty"] = d / "empty.png"
    f["empty"].write_bytes(b"")
    f["random"] = d / "random.bin"
    f["random"].write_bytes(b"\x00\x13" + np.random.RandomState(0).bytes(4094))
    f["text"] = d / "notes.jpg"
    f["text"].write_text("this is a text file with an image's name\n")
    f["missing"] = d / "no_such_file.jpg"
    f["directory"] = d / "a_folder.png"
    f["directory"].mkdir()
    t = np.arange(2 * 16000) / 16000
    f["wav"] = d / "tone.wav"
    sf.write(f["wav"], (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, subtype="PCM_16")
    data = bytearray(f["wav"].read_bytes())
    assert data[12:16] == b"fmt "
    data[20:22] = b"\x99\x99"          # audio format code: no such codec
    data[22:24] = b"\x00\x00"          # channels: 0
    f["corrupt_wav"] = d / "corrupt.wav"
    f["corrupt_wav"].write_bytes(bytes(data))
    f["png_bomb"] = _png_bomb(d / "bomb.png")
    buf = io.BytesIO()
    Image.new("P", (1, 1)).save(buf, "GIF")
    gif = bytearray(buf.getvalue())
    gif[6:10] = struct.pack("<HH", 20000, 20000)     # a 20000 x 20000 logical screen
    f["gif_bomb"] = d / "bomb.gif"
    f["gif_bomb"].write_bytes(bytes(gif))
    # videos
    frames = np.stack([np.roll(_image(3), 2 * k, axis=1) for k in range(20)])
    f["mp4"] = d / "good.mp4"
    _ffmpeg("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "64x64", "-r", "10", "-i", "-",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-shortest", "-c:a", "aac",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", f["mp4"],
            stdin=frames.tobytes())
    f["truncated_mp4"] = d / "truncated.mp4"
    f["truncated_mp4"].write_bytes(f["mp4"].read_bytes()[: f["mp4"].stat().st_size // 2])
    f["audio_only_mp4"] = d / "audio_only.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000:duration=2", "-c:a", "aac", f["audio_only_mp4"])
    return f


# (case, how the item is passed, which call, stage, words the cause must contain)
CASES = [
    ("truncated_jpeg", "path", "image", "decode", ["truncated"]),
    ("empty", "path", "image", "sniff", ["empty"]),
    ("random", "path", "image", "sniff", ["unrecognised format"]),
    ("random", "bytes", "image", "sniff", ["unrecognised format"]),
    ("text", "path", "image", "sniff", ["expected image", "text"]),
    ("missing", "str", "image", "fetch", ["no such file"]),
    ("missing", "path", "any", "fetch", ["no such file"]),
    ("directory", "path", "image", "fetch", ["not a regular file"]),
    ("directory", "str", "any", "fetch", ["not a regular file"]),
    ("corrupt_wav", "path", "audio", "decode", ["cannot decode audio"]),
    ("truncated_mp4", "path", "video", "decode", ["cannot read video"]),
    ("audio_only_mp4", "path", "video", "decode", ["no video stream"]),
    ("png_bomb", "path", "image", "limits", ["decompression bomb"]),
    ("gif_bomb", "path", "image", "limits", ["decompression bomb"]),
    ("1d_array", "array", "image", "sniff", ["expected image", "audio"]),
    ("nan_image", "array", "image", "decode", ["NaN"]),
]


def make_item(files, case: str, how: str):
    if case == "1d_array":
        return np.linspace(-1, 1, 1000, dtype=np.float32), "<audio #0>"
    if case == "nan_image":
        arr = np.full((16, 16, 3), 0.5)
        arr[3, 4, 1] = np.nan
        return arr, "<image #0>"
    path = files[case]
    if how == "bytes":
        return path.read_bytes(), "<bytes #0>"
    return (str(path) if how == "str" else path), str(path)


def call(space_for, kind: str, item):
    if kind == "any":
        return space_for["image"].embed([item])
    return getattr(space_for[kind], f"embed_{kind}")([item])


@pytest.fixture(scope="module")
def space_for(tiny_clip, tiny_clap):
    return {"image": tiny_clip, "video": tiny_clip, "audio": tiny_clap}


@pytest.mark.parametrize("case,how,kind,stage,words", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_broken_input_raises_media_error(files, space_for, case, how, kind, stage, words):
    item, name = make_item(files, case, how)
    with pytest.raises(MediaError) as info:
        call(space_for, kind, item)
    e = info.value
    assert e.item == name, f"the error names {e.item!r}, not the input {name!r}"
    assert e.stage == stage, e
    for w in words:
        assert w.lower() in e.cause.lower(), f"{w!r} not in {e.cause!r}"
    assert str(e).startswith(f"{name}: {stage} failed: ")
    assert e.to_dict() == {"item": name, "stage": stage, "error": e.cause}


@pytest.mark.parametrize("case,how,kind,stage,words", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_broken_input_in_a_batch_keeps_its_place(files, space_for, case, how, kind, stage, words):
    item, name = make_item(files, case, how)
    space = space_for["image" if kind == "any" else kind]
    if kind == "audio":
        goods = [files["wav"], (np.sin(np.arange(16000) / 5).astype(np.float32), 16000)]
        good_names = [str(files["wav"]), "<audio #2>"]
    else:
        goods = [files["good0"], files["good1"]]
        good_names = [str(files["good0"]), str(files["good1"])]
    if name.startswith("<"):   # in-memory items are named by their position in the batch
        name = name.replace("#0", "#1")
    modality = None if kind in ("any", "video") else kind
    out = space.embed_items([goods[0], item, goods[1]], modality=modality, on_error="return")
    assert len(out) == 3
    assert isinstance(out[0], omnivec.Embedding) and isinstance(out[2], omnivec.Embedding)
    assert [out[0].item, out[2].item] == good_names
    assert isinstance(out[1], MediaError) and out[1].item == name and out[1].stage == stage
    for w in words:
        assert w.lower() in out[1].cause.lower()
    alone = space.embed(goods, modality=modality)       # the good items without the bad one between them
    assert np.allclose(out[0].vector, alone[0], atol=1e-6) and np.allclose(out[2].vector, alone[1], atol=1e-6)
    # on_error="raise" (the default) raises that same error.
    with pytest.raises(MediaError) as info:
        space.embed_items([goods[0], item, goods[1]], modality=modality)
    assert info.value.item == name and info.value.stage == stage


def test_many_errors_and_goods_keep_input_order(files, tiny_clip):
    items = [files["good0"], files["empty"], files["mp4"], files["truncated_jpeg"], files["good1"],
             np.zeros(5, np.float32), files["png_bomb"], files["good2"], files["missing"], "a text query"]
    out = tiny_clip.embed_items(items, on_error="return")
    kinds = ["MediaError" if isinstance(r, MediaError) else type(r).__name__ for r in out]  # subclasses too
    assert kinds == ["Embedding", "MediaError", "Embedding", "MediaError", "Embedding", "MediaError", "MediaError",
                     "Embedding", "MediaError", "Embedding"]
    assert [r.item for r in out] == [str(files["good0"]), str(files["empty"]), str(files["mp4"]),
                                     str(files["truncated_jpeg"]), str(files["good1"]), "<audio #5>",
                                     str(files["png_bomb"]), str(files["good2"]), str(files["missing"]), "<text #9>"]
    assert [r.stage for r in out if isinstance(r, MediaError)] == ["sniff", "decode", "modality", "limits", "fetch"]
    assert [r.modality for r in out if isinstance(r, omnivec.Embedding)] == ["image", "video", "image", "image",
                                                                             "text"]
    # The good images got the vectors they get on their own (to float32 rounding; see test_images.py).
    for k, name in ((0, "good0"), (4, "good1"), (7, "good2")):
        assert np.allclose(out[k].vector, tiny_clip.embed_image(files[name])[0], atol=1e-6)
    with pytest.raises(MediaError) as info:
        tiny_clip.embed(items)
    assert info.value.item == str(files["empty"])     # the first failure, in input order


def test_asking_a_space_for_a_modality_it_lacks(files, tiny_clip, tiny_clap):
    # Raised at once, before any input is read (the path does not even exist).
    with pytest.raises(ModalityError) as info:
        tiny_clip.embed_audio(files["missing"])
    msg = str(info.value)
    assert "tiny-clip" in msg and "audio" in msg and "text, image, video" in msg
    with pytest.raises(ModalityError, match="tiny-clap.*image"):
        tiny_clap.embed_image([files["good0"]])
    with pytest.raises(ModalityError):
        tiny_clap.embed_video([files["mp4"]])


def test_audio_inside_a_vision_space_is_a_per_item_error(files, tiny_clip, tiny_clap):
    out = tiny_clip.embed_items([files["good0"], files["wav"], "a text"], on_error="return")
    assert isinstance(out[0], omnivec.Embedding) and isinstance(out[2], omnivec.Embedding)
    err = out[1]
    assert isinstance(err, MediaError) and err.stage == "modality" and err.item == str(files["wav"])
    assert "tiny-clip" in err.cause and "audio" in err.cause
    with pytest.raises(MediaError) as info:
        tiny_clip.embed([files["wav"]])
    assert info.value.stage == "modality" and "tiny-clip" in str(info.value)
    # ... and an image inside the audio space.
    err = tiny_clap.embed_items([files["good0"]], on_error="return")[0]
    assert isinstance(err, MediaError) and err.stage == "modality" and "tiny-clap" in err.cause


def test_errors_are_repeatable(files, tiny_clip):
    # The same broken input fails the same way every time (no state left behind by a failure).
    a = tiny_clip.embed_items([files["truncated_jpeg"], files["good0"]], on_error="return")
    b = tiny_clip.embed_items([files["truncated_jpeg"], files["good0"]], on_error="return")
    assert a[0].to_dict() == b[0].to_dict()
    assert np.array_equal(a[1].vector, b[1].vector)


def test_mistyped_media_path_is_an_error_not_a_text(tiny_clip):
    """A one-word string ending in a media suffix names a file; if it is missing, that is an error."""
    res = tiny_clip.embed_items(["cats/tabby.jpg", "a photo of a tabby cat"], on_error="return")
    assert isinstance(res[0], omnivec.MediaError) and res[0].cause == "no such file" and res[0].item == "cats/tabby.jpg"
    assert res[1].modality == "text"
