"""Training batches of the shapes recipes (train/batches.py): which images each caption counts as positive, and how
often each caption style is drawn."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from omnivec.train.batches import ShapesBatches
from omnivec.train.shapes import CAPTION_TEMPLATES, sample_scenes

STYLES = dict(CAPTION_TEMPLATES, shape="a {shape}")


def caption_table():
    """A tokenizer that gives each distinct caption one id, so a batch's captions can be read back as text."""
    vocab: dict[str, int] = {}

    def tokenize(texts):
        ids = torch.tensor([[vocab.setdefault(t, len(vocab) + 1)] for t in texts])
        return ids, torch.ones_like(ids)

    return tokenize, vocab


def test_a_caption_is_positive_for_exactly_the_images_it_fits() -> None:
    scenes = sample_scenes(300, seed=5)
    tokenize, vocab = caption_table()
    pixels = torch.arange(len(scenes)).view(-1, 1, 1, 1).float()  # pixel value = scene index
    batches = ShapesBatches(scenes, pixels, tokenize, batch_size=64, seed=1, styles=STYLES)
    text_of = {i: t for t, i in vocab.items()}
    shared = 0
    for step in range(5):
        batch = batches(step)
        idx = batch.pixel_values.view(-1).long().tolist()
        assert len(set(idx)) == len(idx)  # distinct scenes in a batch
        captions = [text_of[int(i)] for i in batch.input_ids[:, 0]]
        for i, caption in enumerate(captions):
            assert caption in {t.format(**scenes[idx[i]].attributes()) for t in STYLES.values()}  # its own scene's
            for j in range(len(idx)):
                fits = caption in {t.format(**scenes[idx[j]].attributes()) for t in STYLES.values()}
                assert bool(batch.positives[i, j]) == fits, (caption, scenes[idx[j]])
        shared += int(batch.positives.sum()) - len(idx)
    assert shared > 0  # "a circle" and repeated short captions fit other images in the batch too


def test_styles_are_drawn_with_their_weights() -> None:
    scenes = sample_scenes(400, seed=6)
    tokenize, vocab = caption_table()
    weights = dict.fromkeys(CAPTION_TEMPLATES, 1.0) | {"shape": 3.0}
    batches = ShapesBatches(scenes, torch.zeros(len(scenes), 1, 1, 1), tokenize, batch_size=200, seed=2,
                            styles=STYLES, style_weights=weights)
    text_of = {i: t for t, i in vocab.items()}
    drawn = Counter()
    for step in range(20):
        for i in batches(step).input_ids[:, 0].tolist():
            drawn["shape" if text_of[i].count(" ") == 1 else "other"] += 1  # only "a circle" is two words
    share = drawn["shape"] / sum(drawn.values())
    assert abs(share - 3 / 8) < 0.03, share  # 3 of 3 + 5 (uniform would be 1 of 6)


def test_progressive_resizing_swaps_the_images_only() -> None:
    """With ``small_pixels`` the first ``small_steps`` batches show the same scenes, drawn in the same order with the
    same captions, from the small rendering; later batches from the full one."""
    scenes = sample_scenes(100, seed=7)
    tokenize, _ = caption_table()
    full = torch.arange(len(scenes)).view(-1, 1, 1, 1).float().expand(-1, 3, 4, 4)
    small = -full[:, :, :2, :2]  # scene i is -i at half the size
    plain = ShapesBatches(scenes, full, tokenize, batch_size=16, seed=3, styles=STYLES)
    staged = ShapesBatches(scenes, full, tokenize, batch_size=16, seed=3, styles=STYLES, small_pixels=small,
                           small_steps=2)
    for step in range(4):
        a, b = plain(step), staged(step)
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.positives, b.positives)
        if step < 2:
            assert b.pixel_values.shape[-1] == 2 and torch.equal(b.pixel_values, -a.pixel_values[:, :, :2, :2])
        else:
            assert torch.equal(b.pixel_values, a.pixel_values)
    with pytest.raises(ValueError, match="same scenes"):
        ShapesBatches(scenes, full, tokenize, batch_size=16, seed=3, small_pixels=small[:50], small_steps=2)
