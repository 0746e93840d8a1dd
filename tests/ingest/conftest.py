"""A generated media folder for ingestion tests: shape images and videos, speech, duplicates, broken and hostile
files, hidden and system files."""
from __future__ import annotations

import shutil
import subprocess
import zlib
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from omnivec.samples import make_sample_folder, scene, write_video


def png_bomb(path: Path, side: int = 20000) -> None:
    """A valid PNG header claiming side x side pixels, with a tiny compressed body: rejected before decoding."""
    raw = zlib.compress(b"\x00" * (side // 8 + 1) * 64, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


@pytest.fixture(scope="session")
def media_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    make_sample_folder(root, per_concept=3, image_size=96)
    # the same bytes at a second path: embedded once, both paths recorded
    shutil.copy(root / "images" / "red-circle-0.jpg", root / "images" / "copy-of-red-circle.jpg")
    # photos with EXIF dates for filters
    rng = np.random.default_rng(3)
    (root / "dated").mkdir()
    for year, (colour, shape) in ((2018, ("green", "triangle")), (2022, ("green", "triangle"))):
        exif = Image.Exif()
        exif[0x0132] = f"{year}:05:01 12:00:00"
        scene(rng, colour, shape).render(96).save(root / "dated" / f"{colour}-{shape}-{year}.jpg", exif=exif)
    # speech (audio is skipped by an image-text space, indexed by an audio one)
    if shutil.which("espeak-ng"):
        (root / "speech").mkdir()
        for i, words in enumerate(["a dog is barking", "waves on the beach"]):
            subprocess.run(["espeak-ng", "-w", str(root / "speech" / f"speech-{i}.wav"), words], check=True)
    # broken and hostile files
    bad = root / "bad"
    bad.mkdir()
    (bad / "truncated.jpg").write_bytes((root / "images" / "blue-square-0.jpg").read_bytes()[:300])
    (bad / "random.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    (bad / "empty.png").write_bytes(b"")
    png_bomb(bad / "bomb.png")
    # hidden and system files are not indexed unless asked
    (root / ".hidden").mkdir()
    scene(rng, "red", "circle").render(96).save(root / ".hidden" / "secret.png")
    (root / "Thumbs.db").write_bytes(b"\x00" * 100)
    return root
