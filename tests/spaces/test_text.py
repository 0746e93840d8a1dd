"""Long texts are windowed and pooled, not cut; prompt templates and label ensembles."""
from __future__ import annotations

import numpy as np
import pytest

import omnivec
from omnivec.spaces.pooling import pool, text_windows
from vectors import assert_same_vectors

WORDS = ("red circle blue square green triangle yellow star purple cross orange circle on a white background "
         "and then some more words about shapes and colours").split()


def long_text(n_words: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, n_words))


def test_long_text_is_split_into_windows_and_pooled(tiny_clip):
    text = long_text(200)
    rec = tiny_clip.embed_items([text])[0]
    assert rec.info["windows"] >= 3 and rec.info["tokens"] > 75
    windows = text_windows(text, tiny_clip.backend.count_tokens, tiny_clip.backend.max_text_tokens,
                           tiny_clip.config.text.overlap_tokens)
    assert all(n <= tiny_clip.backend.max_text_tokens for _, n in windows)
    assert " ".join(windows[-1][0].split()[-3:]) == " ".join(text.split()[-3:])  # the end of the text is covered
    vecs = tiny_clip.embed_text([w for w, _ in windows])
    expected = pool(vecs, [n for _, n in windows])
    np.testing.assert_allclose(rec.vector, expected, atol=1e-6)
    # Not the same as silently keeping only the first window (truncation).
    assert not np.allclose(rec.vector, vecs[0], atol=1e-3)


def test_first_window_pooling_is_explicit_truncation(tiny_clip_dir):
    sp = omnivec.load_space(str(tiny_clip_dir), overrides={"text": {"pooling": "first"}})
    text = long_text(200, seed=1)
    windows = text_windows(text, sp.backend.count_tokens, sp.backend.max_text_tokens, 8, first_only=True)
    assert len(windows) == 1
    np.testing.assert_allclose(sp.embed_text([text])[0], sp.embed_text([windows[0][0]])[0], atol=1e-6)


def test_windows_overlap_and_cover_every_word(tiny_clip):
    text = long_text(300, seed=2)
    windows = text_windows(text, tiny_clip.backend.count_tokens, 20, overlap=6)
    covered = set()
    words = text.split()
    pos = 0
    for w, n in windows:
        piece = w.split()
        # each window is a contiguous run of the text's words
        start = next(i for i in range(max(0, pos - len(piece)), len(words)) if words[i:i + len(piece)] == piece)
        covered.update(range(start, start + len(piece)))
        pos = start + len(piece)
        assert n <= 20
    assert covered == set(range(len(words)))
    assert sum(len(w.split()) for w, _ in windows) > len(words)  # consecutive windows share words


def test_short_text_is_one_window(tiny_clip):
    rec = tiny_clip.embed_items(["a red circle"])[0]
    assert rec.info["windows"] == 1 and rec.info["tokens"] == 3


def test_prompt_templates_and_label_ensembles(tiny_clip):
    one = tiny_clip.embed_labels(["cat"], templates=["a photo of a {}."])[0]
    np.testing.assert_allclose(one, tiny_clip.embed_text(["a photo of a cat."])[0], atol=1e-6)
    two = tiny_clip.embed_labels(["cat"], templates=["a photo of a {}.", "a drawing of a {}."])[0]
    pair = tiny_clip.embed_text(["a photo of a cat.", "a drawing of a cat."])
    np.testing.assert_allclose(two, pool(pair), atol=1e-6)
    # A label carrying several descriptions averages over descriptions x templates.
    multi = tiny_clip.embed_labels([["kitten", "house cat"]], templates=["a photo of a {}."])[0]
    np.testing.assert_allclose(multi, pool(tiny_clip.embed_text(["a photo of a kitten.", "a photo of a house cat."])),
                               atol=1e-6)
    default = tiny_clip.embed_labels(["cat", "dog"])
    assert default.shape == (2, tiny_clip.dim)
    np.testing.assert_allclose(np.linalg.norm(default, axis=1), 1, atol=1e-5)


def test_text_vectors_do_not_depend_on_batch_companions(tiny_clip):
    alone = tiny_clip.embed_text(["a red circle"])[0]
    batch = tiny_clip.embed_text(["x", "a much longer sentence about a blue square on yellow", "a red circle"])[2]
    # The same vector up to float rounding (tests/vectors.py): padding to the longest companion and the batch's
    # shape may change the kernels' last bits on some CPUs, never more.
    assert_same_vectors(alone, batch, "alone and in a padded batch")


def test_bad_override_is_a_config_error(tiny_clip_dir):
    with pytest.raises(omnivec.ConfigError):
        omnivec.load_space(str(tiny_clip_dir), overrides={"nope": {}})


def test_large_text_batches_survive_concurrent_token_counting(tiny_clip):
    # Token counting runs on the decode threads while the model's batch is tokenised; with a shared fast
    # tokenizer and no lock this failed about one call in three at 160 texts of mixed length.
    rng = np.random.default_rng(0)
    words = ["red", "blue", "circle", "square", "on", "a", "large", "small", "picture", "of"]
    texts = [" ".join(rng.choice(words, int(rng.integers(1, 30)))) for _ in range(160)]
    first = tiny_clip.embed_text(texts)
    for _ in range(8):
        assert np.array_equal(tiny_clip.embed_text(texts), first)
