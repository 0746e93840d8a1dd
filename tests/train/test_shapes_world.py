"""Fast unit tests of the generated shapes world."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from omnivec.train.shapes import (
    CAPTION_TEMPLATES,
    COLOURS,
    PALETTE,
    SHAPES,
    SIZES,
    Scene,
    allowed_backgrounds,
    caption_attributes,
    concept_names,
    evaluation_scenes,
    heldout_background,
    sample_scenes,
)


def _triples(scenes: list[Scene]) -> set[tuple[str, str, str]]:
    return {(s.shape, s.colour, s.background) for s in scenes}


def test_sampling_and_rendering_are_deterministic() -> None:
    a, b = sample_scenes(50, seed=3), sample_scenes(50, seed=3)
    assert a == b
    for s, t in zip(a[:10], b[:10]):
        assert np.array_equal(np.asarray(s.render(48)), np.asarray(t.render(48)))


def test_seeds_and_splits_give_different_scenes() -> None:
    assert sample_scenes(20, seed=0) != sample_scenes(20, seed=1)
    train, held = sample_scenes(20, seed=0, split="train"), sample_scenes(20, seed=0, split="heldout")
    assert {(s.x, s.y) for s in train}.isdisjoint({(s.x, s.y) for s in held})


def test_heldout_compositions_never_appear_in_training() -> None:
    train = _triples(sample_scenes(5000, seed=0, split="train"))
    held = _triples(sample_scenes(500, seed=0, split="heldout"))
    assert train.isdisjoint(held)
    # Every (shape, colour) pair still appears in training, just not on its reserved background.
    assert {(s, c) for s, c, _ in train} == set(itertools.product(SHAPES, COLOURS))
    for shape, colour in itertools.product(SHAPES, COLOURS):
        reserved = heldout_background(shape, colour)
        assert reserved != colour
        assert allowed_backgrounds(shape, colour, "heldout") == [reserved]
        assert reserved not in allowed_backgrounds(shape, colour, "train")


def test_heldout_images_are_new_renderings() -> None:
    train = {np.asarray(s.render(32)).tobytes() for s in sample_scenes(2000, seed=0)}
    held = [np.asarray(s.render(32)).tobytes() for s in evaluation_scenes(seed=0)]
    assert not train.intersection(held)


def test_evaluation_set_has_one_unambiguous_caption_per_composition() -> None:
    scenes = evaluation_scenes(seed=5)
    assert len(scenes) == len(SHAPES) * len(COLOURS)
    assert {(s.colour, s.shape) for s in scenes} == set(itertools.product(COLOURS, SHAPES))
    for style in ("short", "full", "picture"):
        captions = [s.caption(style) for s in scenes]
        assert len(set(captions)) == len(captions)
    assert all(s.background == heldout_background(s.shape, s.colour) for s in scenes)


@pytest.mark.parametrize("scene", sample_scenes(40, seed=11), ids=lambda s: s.caption("full"))
def test_rendering_matches_caption(scene: Scene) -> None:
    image = scene.render(64)
    assert image.size == (64, 64) and image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    # Every shape contains its centre; the corners lie outside its circumscribed circle.
    cx, cy = int(scene.x * 64), int(scene.y * 64)
    assert np.abs(pixels[cy, cx] - PALETTE[scene.colour]).max() <= 8
    for corner in (pixels[0, 0], pixels[0, -1], pixels[-1, 0], pixels[-1, -1]):
        assert np.abs(corner - PALETTE[scene.background]).max() <= 8
    full = scene.caption("full")
    assert full == f"a {scene.size} {scene.colour} {scene.shape} on a {scene.background} background"
    assert scene.caption("short") == f"a {scene.colour} {scene.shape}"


def test_scene_attributes_are_consistent() -> None:
    for s in sample_scenes(300, seed=2):
        assert s.shape in SHAPES and s.colour in COLOURS and s.background in COLOURS
        assert s.colour != s.background
        lo, hi = SIZES[s.size]
        assert lo <= s.radius <= hi
        assert s.radius <= s.x <= 1 - s.radius and s.radius <= s.y <= 1 - s.radius


def test_random_caption_style_uses_known_templates() -> None:
    rng = np.random.default_rng(0)
    scene = sample_scenes(1, seed=0)[0]
    allowed = {scene.caption(style) for style in CAPTION_TEMPLATES}
    assert {scene.caption(rng) for _ in range(50)} == allowed


def test_caption_attributes_and_matching() -> None:
    assert caption_attributes("short") == ("colour", "shape")
    assert caption_attributes("full") == ("size", "colour", "shape", "background")
    a = Scene("circle", "red", "small", "blue", 0.5, 0.5, 0.15)
    b = Scene("circle", "red", "large", "green", 0.3, 0.3, 0.3)
    assert a.matches(b, "short") and not a.matches(b, "full") and not a.matches(b, "sized")


def test_palette_colours_are_distinct() -> None:
    names = concept_names()
    assert set(names) == {"shape", "colour", "size", "background"}
    rgb = np.array([PALETTE[c] for c in names["colour"]], dtype=float)
    distances = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert distances[~np.eye(len(rgb), dtype=bool)].min() > 60
