"""Learned semantics: a tiny CLIP trained on the shapes world retrieves held-out scenes.

The model is trained once per module (about a minute on 2 CPU cores), saved in
Hugging Face hub layout, then driven both through raw transformers and through
omnivec's public API with PNG files on disk.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from omnivec.train import load_or_train_shapes_clip, read_recipe, write_clip_tokenizer
from omnivec.train.recipes import make_processor

MIN_RECALL = 0.9
# Captions name size, colour, shape and background ("a small red circle on a yellow background"). This ViT binds
# colour, size and background within its step budget but not shape alone; "a red circle" is tested on the ResNet
# recipe's model (test_trained_resnet_clip.py).
STYLE = "full"
HUB_FILES = (
    "config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
    "special_tokens_map.json", "preprocessor_config.json", "omnivec_recipe.json",
)


@pytest.fixture(scope="module")
def model_dir(shapes_clip_dir: Path) -> Path:
    """Trained once per session (tests/conftest.py) and shared with the pipeline tests that check meaning."""
    return shapes_clip_dir


def recall_at_1(text: np.ndarray, images: np.ndarray) -> float:
    """Fraction of queries whose own image (same index) is the top-1 match."""
    return float(np.mean(np.argmax(text @ images.T, axis=1) == np.arange(len(text))))


def test_tokenizer_reproduces_open_clip_ids(tmp_path: Path) -> None:
    open_clip = pytest.importorskip("open_clip")
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path))
    reference = open_clip.get_tokenizer("ViT-B-32")
    texts = ["a red circle", "A small BLUE square on yellow!", "a picture of a purple star, isn't it?"]
    for text, ids in zip(texts, reference(texts)):
        expected = [int(i) for i in ids if i != 0]
        assert expected[0] == 49406 and expected[-1] == 49407
        assert tokenizer(text)["input_ids"] == expected
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.model_max_length == 77


def test_hub_layout_and_recipe(model_dir: Path) -> None:
    for name in HUB_FILES:
        assert (model_dir / name).is_file(), name
    recipe = read_recipe(model_dir)
    assert recipe["steps"] > 0 and np.isfinite(recipe["final_loss"])
    assert recipe["heldout_recall_at_1"][STYLE] >= MIN_RECALL
    # Nothing half-written is left beside the finished model (training happens in hidden temporary siblings; other
    # recipes' finished models may share the folder).
    assert [p.name for p in model_dir.parent.iterdir() if p.name.startswith(".")] == []


def test_cached_model_is_reused(cache_dir: Path, model_dir: Path, training_seed: int) -> None:
    before = (model_dir / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert load_or_train_shapes_clip(cache_dir, seed=training_seed) == model_dir
    assert time.perf_counter() - start < 5
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == before


def test_reloads_offline_with_same_preprocessing(model_dir: Path, heldout) -> None:
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    scenes, paths = heldout
    processor = AutoProcessor.from_pretrained(model_dir)
    images = [Image.open(p) for p in paths]
    trained_with = make_processor(model_dir, read_recipe(model_dir)["image_size"])
    reloaded = processor(images=images, return_tensors="pt")["pixel_values"]
    original = trained_with(images=images, return_tensors="pt")["pixel_values"]
    assert torch.equal(reloaded, original)

    model = AutoModel.from_pretrained(model_dir).eval()
    captions = [s.caption(STYLE) for s in scenes]
    with torch.no_grad():
        text = model.get_text_features(**processor(text=captions, padding=True, return_tensors="pt")).pooler_output
        image = model.get_image_features(pixel_values=reloaded).pooler_output
    text = torch.nn.functional.normalize(text, dim=-1).numpy()
    image = torch.nn.functional.normalize(image, dim=-1).numpy()
    assert recall_at_1(text, image) >= MIN_RECALL


def test_heldout_recall_through_public_api(model_dir: Path, heldout) -> None:
    import omnivec

    scenes, paths = heldout
    space = omnivec.load_space(str(model_dir))
    text = space.embed_text([s.caption(STYLE) for s in scenes])
    images = space.embed_image([str(p) for p in paths])
    for emb in (text, images):
        assert emb.dtype == np.float32 and emb.shape[0] == len(scenes)
        assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert recall_at_1(text, images) >= MIN_RECALL
