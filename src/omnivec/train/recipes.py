"""Recipe: train a tiny CLIP on the shapes world and save it in Hugging Face hub layout.

The saved directory loads offline with ``transformers.AutoModel`` /
``AutoProcessor`` (config.json, model.safetensors, tokenizer files,
preprocessor_config.json, processor_config.json) plus ``omnivec_recipe.json``
recording how it was made and how well it did on held-out scenes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from . import batches
from .contrastive import TrainStats, train_contrastive
from .shapes import Scene, evaluation_scenes, sample_scenes
from .tokenizer import write_clip_tokenizer

RECIPE_FILE = "omnivec_recipe.json"
RECIPE_NAME = "shapes-clip"
RECIPE_VERSION = 1  # bump when anything below changes what gets trained

# Tuned on 2 CPU cores: big enough to bind colour, size and background, small enough to reach >0.95 held-out
# recall@1 on full captions in about a minute. Shape alone ("a red circle") it does not learn: not in 1,500 steps
# either (measured on a GPU). CLIP's ResNet tower does, in about 90 s: resnet_recipe.py, docs/training.md.
TOWER = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4}
PROJECTION_DIM = 64
PATCH_SIZE = 8
POOL_SIZE = 5000  # pre-rendered training scenes
BATCH_SIZE = 128
LR = 2e-3
# A step budget, not a wall-clock one: the model must not depend on how busy the machine is. The cap only bounds
# the run on a very slow machine (the recipe file records the steps actually taken). It is about 20x the time the
# steps take on 2 quiet cores: at 5x (300 s), a CI run sharing the cores with another test run was cut at 326 of
# 400 steps (2026-12-08), and that other model failed three colour-neighbour tests.
TRAIN_STEPS = 400
TRAIN_SECONDS_CAP = 1200.0

def tiny_clip_config(image_size: int = 64):
    from transformers import CLIPConfig

    text = dict(TOWER, vocab_size=49408, max_position_embeddings=77,
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    vision = dict(TOWER, image_size=image_size, patch_size=PATCH_SIZE)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=PROJECTION_DIM)


def make_processor(tokenizer_dir: str | Path, image_size: int = 64):
    """The exact preprocessing used for training and saved for inference."""
    from transformers import CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,  # bicubic
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir))


def pixel_values(processor, images: Sequence, chunk: int = 512) -> torch.Tensor:
    parts = [
        processor.image_processor(images=list(images[i : i + chunk]), return_tensors="pt")["pixel_values"]
        for i in range(0, len(images), chunk)
    ]
    return torch.cat(parts)


class ShapesBatches(batches.ShapesBatches):
    """The shared batches with this recipe's own order of random draws, which the suite's model depends on."""

    def draw(self):
        # A coin per step, once for a hard-batch option since removed, then scenes, then uniform styles. Kept so that
        # this model, which the rest of the suite is calibrated on, stays the same bit for bit: trained on the shared
        # order instead, an equally good model failed 4 tests that expect its particular colour neighbours.
        self.rng.random()
        idx = self.rng.choice(len(self.pixels), self.batch_size, replace=False)
        return idx, self.rng.integers(0, len(self.style_p), self.batch_size)


def hf_tokenize(tokenizer):
    """A transformers tokenizer as the ``texts -> (input_ids, attention_mask)`` that ``ShapesBatches`` takes."""
    def tokenize(texts):
        enc = tokenizer(list(texts), padding=True, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]
    return tokenize


@torch.no_grad()
def text_to_image_recall(model, processor, scenes: list[Scene], style: str = "short") -> float:
    """Recall@1: each scene's caption must rank that scene's image first."""
    captions = [s.caption(style) for s in scenes]
    if len(set(captions)) != len(captions):
        raise ValueError(f"captions in style {style!r} are ambiguous within the evaluation set")
    text = processor.tokenizer(captions, padding=True, return_tensors="pt")
    t = model.get_text_features(**text).pooler_output
    i = model.get_image_features(pixel_values=pixel_values(processor, [s.render(_image_size(processor)) for s in scenes])).pooler_output
    sims = torch.nn.functional.normalize(t, dim=-1) @ torch.nn.functional.normalize(i, dim=-1).T
    return float((sims.argmax(dim=1) == torch.arange(len(scenes))).float().mean())


def _image_size(processor) -> int:
    return int(processor.image_processor.crop_size["height"])


def recipe_key(seed: int, image_size: int, seconds: float, max_steps: int | None,
               recipe: str = RECIPE_NAME, version: int = RECIPE_VERSION) -> dict:
    """What identifies a trained model: reuse a cached one only if this matches."""
    return {"recipe": recipe, "version": version, "seed": seed, "image_size": image_size,
            "seconds": seconds, "max_steps": max_steps}


def model_folder(cache_dir: str | Path, key: dict) -> Path:
    """Where the model of a recipe key is cached."""
    budget = _budget_tag(key["seconds"], key["max_steps"])
    return Path(cache_dir) / f"{key['recipe']}-v{key['version']}-seed{key['seed']}-{key['image_size']}px-{budget}"


def train_shapes_clip(
    out_dir: str | Path,
    seconds: float = TRAIN_SECONDS_CAP,
    seed: int = 0,
    image_size: int = 64,
    max_steps: int | None = TRAIN_STEPS,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build, train (``seconds`` wall clock and/or ``max_steps``) and save the tiny shapes CLIP."""
    from transformers import CLIPModel

    out = Path(out_dir)
    start = time.perf_counter()
    write_clip_tokenizer(out)
    processor = make_processor(out, image_size)
    torch.manual_seed(seed)  # model init
    model = CLIPModel(tiny_clip_config(image_size))

    scenes = sample_scenes(POOL_SIZE, seed=seed, split="train")
    pixels = pixel_values(processor, [s.render(image_size) for s in scenes])
    batch_source = ShapesBatches(scenes, pixels, hf_tokenize(processor.tokenizer), BATCH_SIZE, seed)
    prep_seconds = time.perf_counter() - start
    stats = train_contrastive(model, batch_source, max_steps=max_steps, seconds=seconds, lr=LR, seed=seed, log=log)
    if max_steps and stats.steps < max_steps:   # another model than the recipe's: say so where it is used
        warnings.warn(f"shapes CLIP seed {seed}: the {seconds:g} s cap stopped training at {stats.steps} of "
                      f"{max_steps} steps (a very busy or slow machine); the model is not the recipe's")

    eval_scenes = evaluation_scenes(seed, split="heldout")
    recall = {st: text_to_image_recall(model, processor, eval_scenes, st) for st in ("short", "full")}
    model.save_pretrained(out)
    processor.save_pretrained(out)
    processor.image_processor.save_pretrained(out)  # preprocessor_config.json for image-only loaders
    write_recipe(out, recipe_key(seed, image_size, seconds, max_steps), stats, prep_seconds, recall, len(eval_scenes))
    return out


def write_recipe(out: Path, key: dict, stats: TrainStats, prep_seconds: float, recall: dict, n_eval: int,
                 batch_size: int = BATCH_SIZE, pool_size: int = POOL_SIZE, **settings) -> None:
    """``omnivec_recipe.json``: what made the model (``key``), how (``settings``: a recipe's own, such as a warm
    phase at a smaller image size), and how well it did on held-out scenes."""
    record = dict(
        key,
        steps=stats.steps,
        train_seconds=round(stats.seconds, 2),
        prep_seconds=round(prep_seconds, 2),
        final_loss=round(stats.final_loss, 4),
        logit_scale=round(stats.logit_scale, 2),
        batch_size=batch_size,
        pool_size=pool_size,
        **settings,
        heldout_recall_at_1=recall,
        heldout_eval_size=n_eval,
        torch_threads=torch.get_num_threads(),
    )
    (out / RECIPE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def read_recipe(model_dir: str | Path) -> dict | None:
    path = Path(model_dir) / RECIPE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_or_train_shapes_clip(
    cache_dir: str | Path,
    seconds: float = TRAIN_SECONDS_CAP,
    seed: int = 0,
    image_size: int = 64,
    max_steps: int | None = TRAIN_STEPS,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return a finished model directory under ``cache_dir``, training it only if needed.

    Training happens in a temporary sibling directory that is renamed into place
    when complete, so an interrupted run never leaves a half-written model.
    """
    key = recipe_key(seed, image_size, seconds, max_steps)
    return cached_model(model_folder(cache_dir, key), key, lambda tmp: train_shapes_clip(
        tmp, seconds=seconds, seed=seed, image_size=image_size, max_steps=max_steps, log=log))


def cached_model(final: Path, key: dict, train: Callable[[Path], object]) -> Path:
    """`final` if it holds a model whose recipe file matches `key`; else `train(tmp)` in a temporary sibling that is
    renamed into place when complete, so an interrupted run never leaves a half-written model."""
    if _matches(final, key):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        train(tmp)
        if final.exists():  # stale (recipe mismatch) or finished by a concurrent run
            if _matches(final, key):
                return final
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _budget_tag(seconds: float, max_steps: int | None) -> str:
    return f"{seconds:g}s" + (f"-{max_steps}steps" if max_steps else "")


def _matches(model_dir: Path, key: dict) -> bool:
    record = read_recipe(model_dir)
    return record is not None and all(record.get(k) == v for k, v in key.items())
