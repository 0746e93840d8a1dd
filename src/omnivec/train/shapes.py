"""A generated "shapes world": coloured shapes on plain backgrounds, with captions.

Every scene is fully described by a few named attributes (shape, colour, size,
background) plus continuous placement (centre, radius, rotation), so captions are
exact and a tiny CLIP can learn the semantics in seconds on a CPU.

Held-out honesty: for every (shape, colour) pair one background colour is reserved
for the held-out split and never appears with that pair in training, so held-out
scenes are unseen compositions, rendered at freshly drawn positions/sizes/angles.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw

# Distinct, saturated colours so that colour names are unambiguous at 64 px.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (35, 75, 225),
    "yellow": (245, 225, 35),
    "purple": (135, 40, 175),
    "orange": (245, 135, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
# Radius (centre to outermost point) as a fraction of the image side.
SIZES: dict[str, tuple[float, float]] = {"small": (0.13, 0.18), "large": (0.27, 0.34)}
# Shape and background must differ this much in luma (0-255), so the outline is visible
# in brightness and not only in hue.
MIN_CONTRAST = 0.0
OUTLINE: tuple[int, int, int] | None = None
OUTLINE_WIDTH = 1 / 32  # fraction of the image side
MAX_ANGLE = 20.0  # degrees of rotation jitter; small so a square stays a square

CAPTION_TEMPLATES: dict[str, str] = {
    "short": "a {colour} {shape}",
    "sized": "a {size} {colour} {shape}",
    "on": "a {colour} {shape} on {background}",
    "full": "a {size} {colour} {shape} on a {background} background",
    "picture": "a picture of a {colour} {shape}",
}
Split = Literal["train", "heldout"]
_SPLIT_STREAM = {"train": 0, "heldout": 1}
_SUPERSAMPLE = 4  # draw large then downsample, for anti-aliased edges


def concept_names() -> dict[str, tuple[str, ...]]:
    """Attribute name -> the values it can take (for tagging, clustering, demos)."""
    return {"shape": SHAPES, "colour": COLOURS, "size": tuple(SIZES), "background": COLOURS}


def template_attributes(template: str) -> tuple[str, ...]:
    """Attributes that a caption template names: "a {colour} {shape}" -> ("colour", "shape")."""
    return tuple(name for _, name, _, _ in string.Formatter().parse(template) if name)


def caption_attributes(style: str) -> tuple[str, ...]:
    """Attributes that a caption style mentions, read from its template."""
    return template_attributes(CAPTION_TEMPLATES[style])


def luma(colour: str) -> float:
    r, g, b = PALETTE[colour]
    return 0.299 * r + 0.587 * g + 0.114 * b


def backgrounds_for(colour: str) -> list[str]:
    """Background colours a shape of ``colour`` may be drawn on."""
    return [c for c in COLOURS if c != colour and abs(luma(c) - luma(colour)) >= MIN_CONTRAST]


def heldout_background(shape: str, colour: str) -> str:
    """The one background reserved for held-out scenes of this (shape, colour) pair.

    A fixed rule (not seeded) so that the split is a property of the world and the
    same for every seed.
    """
    candidates = backgrounds_for(colour)
    return candidates[(3 * SHAPES.index(shape) + COLOURS.index(colour)) % len(candidates)]


def allowed_backgrounds(shape: str, colour: str, split: Split) -> list[str]:
    reserved = heldout_background(shape, colour)
    if split == "heldout":
        return [reserved]
    return [c for c in backgrounds_for(colour) if c != reserved]


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    background: str
    x: float  # centre, fraction of image width
    y: float  # centre, fraction of image height
    radius: float  # fraction of image side
    angle: float = 0.0  # degrees

    def caption(self, style: str | np.random.Generator = "short") -> str:
        """Caption in a named style, or in a random style drawn from ``style`` (an rng)."""
        if isinstance(style, np.random.Generator):
            style = str(style.choice(list(CAPTION_TEMPLATES)))
        return CAPTION_TEMPLATES[style].format(**self.attributes())

    def attributes(self) -> dict[str, str]:
        return {"shape": self.shape, "colour": self.colour, "size": self.size, "background": self.background}

    def matches(self, other: Scene, style: str) -> bool:
        """Whether ``other`` also fits this scene's caption in ``style``."""
        mine, theirs = self.attributes(), other.attributes()
        return all(mine[a] == theirs[a] for a in caption_attributes(style))

    def render(self, image_size: int = 64) -> Image.Image:
        side = image_size * _SUPERSAMPLE
        img = Image.new("RGB", (side, side), PALETTE[self.background])
        draw = ImageDraw.Draw(img)
        cx, cy, r = self.x * side, self.y * side, self.radius * side
        fill = PALETTE[self.colour]
        style = {"fill": fill}
        if OUTLINE is not None:
            style.update(outline=OUTLINE, width=max(1, round(OUTLINE_WIDTH * side)))
        if self.shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), **style)
        else:
            draw.polygon(_polygon(self.shape, cx, cy, r, self.angle), **style)
        return img.resize((image_size, image_size), Image.Resampling.LANCZOS)


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices (radius r = centre to furthest vertex), rotated by ``angle`` degrees."""
    if shape == "square":
        pts = [(math.cos(math.radians(45 + 90 * k)), math.sin(math.radians(45 + 90 * k))) for k in range(4)]
    elif shape == "triangle":
        # Pointing up (-90 degrees is "up" in image coordinates).
        pts = [(math.cos(math.radians(-90 + 120 * k)), math.sin(math.radians(-90 + 120 * k))) for k in range(3)]
    elif shape == "star":
        pts = [
            ((1.0 if k % 2 == 0 else 0.45) * math.cos(math.radians(-90 + 36 * k)),
             (1.0 if k % 2 == 0 else 0.45) * math.sin(math.radians(-90 + 36 * k)))
            for k in range(10)
        ]
    elif shape == "cross":
        a, b = 0.35, 1.0 / math.sqrt(1 + 0.35**2)  # arm half-width, arm reach (|corner| = 1)
        a *= b
        pts = [(a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b),
               (-a, b), (-a, a), (-b, a), (-b, -a), (-a, -a), (-a, -b)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    t = math.radians(angle)
    cos_t, sin_t = math.cos(t), math.sin(t)
    return [(cx + r * (px * cos_t - py * sin_t), cy + r * (px * sin_t + py * cos_t)) for px, py in pts]


def _rng(seed: int, split: Split) -> np.random.Generator:
    # Separate streams per split: held-out placements are never copies of training ones.
    return np.random.default_rng([seed, _SPLIT_STREAM[split]])


def _place(rng: np.random.Generator, shape: str, colour: str, size: str, split: Split) -> Scene:
    background = str(rng.choice(allowed_backgrounds(shape, colour, split)))
    radius = float(rng.uniform(*SIZES[size]))
    x, y = (float(v) for v in rng.uniform(radius, 1.0 - radius, size=2))  # keep fully inside
    angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
    return Scene(shape, colour, size, background, x, y, radius, angle)


def sample_scenes(n: int, seed: int = 0, split: Split = "train") -> list[Scene]:
    """``n`` random scenes; deterministic in (n, seed, split)."""
    rng = _rng(seed, split)
    scenes = []
    for _ in range(n):
        shape, colour, size = str(rng.choice(SHAPES)), str(rng.choice(COLOURS)), str(rng.choice(list(SIZES)))
        scenes.append(_place(rng, shape, colour, size, split))
    return scenes


def evaluation_scenes(seed: int = 0, split: Split = "heldout") -> list[Scene]:
    """One scene per (colour, shape) pair, so the "short" caption names exactly one image."""
    rng = _rng(seed + 1_000_003, split)  # distinct from sample_scenes(seed) streams
    return [
        _place(rng, shape, colour, str(rng.choice(list(SIZES))), split)
        for colour in COLOURS
        for shape in SHAPES
    ]
