"""A generated sample folder (shape images and short videos) for the demo and for tests of whole pipelines.

File names carry the concept ("red-circle-2.jpg", "red-circle-then-blue-square.mp4") so a reader can check a
search result by eye, and a test can check it by name."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .train.shapes import SIZES, Scene

CONCEPTS = [("red", "circle"), ("blue", "square"), ("green", "triangle"), ("yellow", "star"), ("purple", "cross"),
            ("orange", "circle")]
VIDEOS = [(("red", "circle"), ("blue", "square")), (("green", "triangle"), ("yellow", "star"))]
BACKGROUNDS = ("white", "black", "blue", "yellow", "green")


def scene(rng: np.random.Generator, colour: str, shape: str) -> Scene:
    size = str(rng.choice(list(SIZES)))
    radius = float(rng.uniform(*SIZES[size]))
    x, y = (float(v) for v in rng.uniform(radius, 1 - radius, 2))
    background = str(rng.choice([b for b in BACKGROUNDS if b != colour]))
    return Scene(shape, colour, size, background, x, y, radius, float(rng.uniform(-15, 15)))


def make_sample_folder(folder: Path, per_concept: int = 3, image_size: int = 192, seed: int = 7) -> Path:
    """Write images (JPEG and PNG) and videos (H.264 MP4) into `folder`; returns it. Idempotent."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for colour, shape in CONCEPTS:
        for k in range(per_concept):
            img = scene(rng, colour, shape).render(image_size)
            ext = "jpg" if k % 2 == 0 else "png"
            path = folder / "images" / f"{colour}-{shape}-{k}.{ext}"
            if not path.exists():
                img.save(path, quality=92) if ext == "jpg" else img.save(path)
    for first, second in VIDEOS:
        path = folder / "videos" / f"{'-'.join(first)}-then-{'-'.join(second)}.mp4"
        if not path.exists():
            frames = [Image.new("RGB", (image_size, image_size))] * 10  # one second of black lead-in
            for colour, shape in (first, second):
                s = scene(rng, colour, shape)
                frames += [s.render(image_size)] * 40  # four seconds each at 10 fps
            write_video(path, frames, fps=10)
    return folder


def write_video(path: Path, frames: list[Image.Image], fps: int = 10) -> Path:
    """Encode frames as H.264 with a keyframe every 25 frames (so seeking is exercised)."""
    import av

    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].size
        stream.pix_fmt = "yuv420p"
        stream.options = {"g": "25", "crf": "20"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path
