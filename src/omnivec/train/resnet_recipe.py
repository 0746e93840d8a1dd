"""Recipe: a tiny CLIP with CLIP's ResNet image tower, trained on the shapes world, in open_clip's hub layout.

This is the model that learns shape alone: "a red circle" picks the red circle from the other red shapes on
held-out scenes. The transformers ViT of ``recipes.py`` (the suite's shared model) learns colour, size and
background but not shape in any budget tried (docs/training.md).

The architecture is open_clip's ``ModifiedResNet`` (the tower behind OpenAI's RN50) at toy width and the CLIP text
transformer. The saved folder holds ``open_clip_config.json`` (model and preprocessing config),
``open_clip_model.safetensors`` and ``omnivec_recipe.json`` (how it was made and how well it did on held-out
scenes). It loads with ``open_clip.create_model_and_transforms("local-dir:FOLDER")`` and ``omnivec.load_space(FOLDER)``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .batches import ShapesBatches
from .contrastive import train_contrastive
from .recipes import cached_model, model_folder, recipe_key, write_recipe
from .shapes import CAPTION_TEMPLATES, Scene, evaluation_scenes, sample_scenes

RECIPE_NAME = "shapes-clip-resnet"
RECIPE_VERSION = 3  # bump when anything below changes what gets trained

# Context 16 tokens: the longest caption is 10 with its start and end tokens, and CLIP's 77 would make every text
# step several times dearer. 48 px scenes: shapes stay distinct and a step costs half of 64 px (32 or 40 px learnt
# shape later). Shape is learnt in a late jump whose timing varies by seed; what brought it forward: captions of shape
# alone, 1.5e-3 held constant until the cooldown (3e-3 learnt it later; 5e-3, or a 3x rate for the image tower, not
# within the budget), and no gradient clipping. Batch 128, not 256: over 16 training seeds (a GPU sweep, figures in
# docs/training.md), 1000 steps of 128 put every seed at 0.8 or more recall@1 for "a red circle" and 9 of 16 at 0.9
# on all three held-out sets, against 1 of 8 at 0.9 for 600 of 256, and a step of 128 costs about 0.6 of one of 256.
TEXT_CFG = {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 2}
VISION_CFG = {"layers": [1, 1, 1, 1], "width": 16}
EMBED_DIM = 64
IMAGE_SIZE = 48
POOL_SIZE = 5000  # pre-rendered training scenes
BATCH_SIZE = 128
LR = 1.5e-3
# A step budget, not a wall-clock one: the model must not depend on how busy the machine is. The cap only bounds
# the run on a very slow machine (the recipe file records the steps actually taken). It is 5x the time the steps
# take here: with 2x, a run sharing the cores with another job was cut at 330 steps and had not learnt shape.
TRAIN_STEPS = 800
TRAIN_SECONDS_CAP = 900.0
# Progressive resizing: the first SMALL_STEPS steps see the scenes at 32 px, where a step costs about 0.7 of one at
# 48 px. Colour, size and background need no detail; shape is learnt late, at full size. The tower's attention pool
# sees a 1x1 grid at both sizes, so the saved model is the same kind.
SMALL_IMAGE_SIZE = 32
SMALL_STEPS = 300
# The last fifth of the run lowers the rate linearly to zero. At a constant rate recall@1 swings by as much as 0.25
# between checkpoints 100 steps apart, so the step a run stopped at decided its result; the cooldown settles it.
# Version 3 (these three settings, 800 steps) over training seeds 0-9 on the CPU: min / mean recall@1 for "a red
# circle" 0.90 / 0.98 on the held-out sets of seeds 0, 2024 and 7 (every seed at 0.9 or more on all three), against
# 0.82 / 0.92 and 6 of 10 for version 2 (1000 steps at 48 px, constant rate; same seeds, GPU sweep), in about 0.65 of
# its time. Figures in docs/training.md.
COOLDOWN = 0.2

# Training captions: the shapes world's styles plus shape alone ("a circle"), drawn with these weights. Shape is
# the attribute a tiny tower learns last; captions that name nothing else make it the whole of the loss for them.
TRAIN_STYLES = dict(CAPTION_TEMPLATES, shape="a {shape}")
STYLE_WEIGHTS = dict.fromkeys(CAPTION_TEMPLATES, 1.0) | {"shape": 3.0}


def model_config(image_size: int = IMAGE_SIZE) -> dict:
    """open_clip's ``model_cfg`` for the tiny CLIP (the ``CLIP(**cfg)`` arguments)."""
    return {"embed_dim": EMBED_DIM, "vision_cfg": dict(VISION_CFG, image_size=image_size), "text_cfg": dict(TEXT_CFG)}


def preprocess_config() -> dict:
    import open_clip

    return {"mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
            "interpolation": "bicubic", "resize_mode": "shortest"}


def build_model(image_size: int = IMAGE_SIZE):
    import open_clip

    model = open_clip.CLIP(**model_config(image_size))
    # CLIP starts each residual branch at zero (bn3 weight 0), which at this width stalls the tower for hundreds of
    # steps; starting them open is the usual ResNet init and learns shape in a fraction of the steps.
    for block in model.visual.modules():
        if hasattr(block, "bn3"):
            torch.nn.init.ones_(block.bn3.weight)
    return model


def image_transform(image_size: int = IMAGE_SIZE):
    """The exact preprocessing used for training and written to ``open_clip_config.json`` for inference."""
    import open_clip

    cfg = preprocess_config()
    return open_clip.image_transform(image_size, is_train=False, mean=cfg["mean"], std=cfg["std"],
                                     interpolation=cfg["interpolation"], resize_mode=cfg["resize_mode"])


def tokenize(texts: Sequence[str]) -> torch.Tensor:
    import open_clip

    return open_clip.tokenize(list(texts), context_length=TEXT_CFG["context_length"])


def training_batches(scenes: list[Scene], pixels: torch.Tensor, batch_size: int, seed: int,
                     small_pixels: torch.Tensor | None = None) -> ShapesBatches:
    """This recipe's batches: its caption styles and weights, open_clip token ids, and with ``small_pixels`` the
    first ``SMALL_STEPS`` at the small size."""
    def tokenize_with_mask(texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = tokenize(texts)
        return ids, (ids != 0).long()

    return ShapesBatches(scenes, pixels, tokenize_with_mask, batch_size, seed, styles=TRAIN_STYLES,
                         style_weights=STYLE_WEIGHTS, small_pixels=small_pixels,
                         small_steps=SMALL_STEPS if small_pixels is not None else 0)


def pixel_values(transform, images: Sequence) -> torch.Tensor:
    return torch.stack([transform(im) for im in images])


class TrainView(torch.nn.Module):
    """The transformers-shaped view of an open_clip CLIP that ``train_contrastive`` drives (same parameters).

    With ``distinct_captions`` each distinct caption in a batch goes through the text tower once and its vector is
    shared by every copy. Captions repeat a lot here ("a circle" is drawn 3 times in 8), so a batch of 128 holds
    about 80 distinct ones. Loss and gradients are the same (a shared row's gradient is the sum over its copies);
    only the order of float additions differs.
    """

    def __init__(self, clip, distinct_captions: bool = True):
        super().__init__()
        self.clip = clip
        self.logit_scale = clip.logit_scale
        self.distinct_captions = distinct_captions

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        # Causal text tower: padding after the end token is never read, so the mask is not needed.
        if not self.distinct_captions:
            return self.clip.encode_text(input_ids)
        distinct, copies = torch.unique(input_ids, dim=0, return_inverse=True)
        return self._encode_text_unpadded(distinct)[copies]

    def _encode_text_unpadded(self, ids: torch.Tensor) -> torch.Tensor:
        """``clip.encode_text`` on the columns up to the last end token only (at most 10 of 16 here).

        The same computation: the tower is causal and reads each caption at its end token (the largest id), so no
        output depends on the padding after it. Written out because open_clip's ``encode_text`` always adds the
        full-length positional embedding and mask.
        """
        clip = self.clip
        if clip.text_pool_type != "argmax" or not isinstance(clip.text_projection, torch.nn.Parameter):
            return clip.encode_text(ids)
        ends = ids.argmax(dim=1)
        n = int(ends.max()) + 1
        x = clip.token_embedding(ids[:, :n]) + clip.positional_embedding[:n]
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:n, :n]))
        return x[torch.arange(len(ids)), ends] @ clip.text_projection

    def get_image_features(self, pixel_values: torch.Tensor):
        return self.clip.encode_image(pixel_values)


@contextlib.contextmanager
def used_rows_only(clip, batches: "ShapesBatches"):
    """Train only the token-embedding rows the captions use; the result is the same model, faster.

    The captions use a few dozen of the 49,408 tokens, but a dense embedding gradient touches every row each step
    (zeroing, backward, AdamW). Unused rows get zero gradient and no weight decay (embeddings are excluded), so
    AdamW never moves them: training a compact copy of the used rows and writing it back is exact. Hand-written
    because neither open_clip nor torch's AdamW has a sparse-row path. Token ids are remapped in sorted order, so
    the end token stays the largest id, which open_clip's text pooling (argmax over ids) relies on.
    """
    full = clip.token_embedding
    used = torch.unique(batches.input_ids)
    remap = torch.zeros(full.num_embeddings, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    compact = torch.nn.Embedding(len(used), full.embedding_dim)
    with torch.no_grad():
        compact.weight.copy_(full.weight[used])
    original_ids = batches.input_ids
    clip.token_embedding, batches.input_ids = compact, remap[original_ids]
    try:
        yield
    finally:
        with torch.no_grad():
            full.weight[used] = compact.weight
        clip.token_embedding, batches.input_ids = full, original_ids


@torch.no_grad()
def text_to_image_recall(model, transform, scenes: list[Scene], style: str = "short",
                         image_size: int = IMAGE_SIZE) -> float:
    """Recall@1: each scene's caption must rank that scene's image first."""
    captions = [s.caption(style) for s in scenes]
    if len(set(captions)) != len(captions):
        raise ValueError(f"captions in style {style!r} are ambiguous within the evaluation set")
    t = model.encode_text(tokenize(captions), normalize=True)
    i = model.encode_image(pixel_values(transform, [s.render(image_size) for s in scenes]), normalize=True)
    return float(((t @ i.T).argmax(dim=1) == torch.arange(len(scenes))).float().mean())


def train_shapes_resnet_clip(
    out_dir: str | Path,
    seconds: float = TRAIN_SECONDS_CAP,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    max_steps: int | None = TRAIN_STEPS,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Build, train (``seconds`` wall clock and/or ``max_steps``) and save the tiny ResNet shapes CLIP."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    torch.manual_seed(seed)  # model init
    model = build_model(image_size)
    transform = image_transform(image_size)

    scenes = sample_scenes(POOL_SIZE, seed=seed, split="train")
    def render(size: int) -> torch.Tensor:
        return pixel_values(image_transform(size), [s.render(size) for s in scenes]).contiguous(
            memory_format=torch.channels_last)

    small_size = SMALL_IMAGE_SIZE if SMALL_IMAGE_SIZE < image_size else None
    pixels, small = render(image_size), render(small_size) if small_size else None
    batches = training_batches(scenes, pixels, BATCH_SIZE, seed, small_pixels=small)
    prep_seconds = time.perf_counter() - start
    model.to(memory_format=torch.channels_last)  # oneDNN's convolutions run about 1.8x faster in NHWC on the CPU
    with used_rows_only(model, batches):
        stats = train_contrastive(TrainView(model), batches, max_steps=max_steps, seconds=seconds, lr=LR, seed=seed,
                                  schedule="constant", cooldown=COOLDOWN, grad_clip=None, log=log)
    model.to(memory_format=torch.contiguous_format).eval()
    eval_scenes = evaluation_scenes(seed, split="heldout")
    recall = {st: text_to_image_recall(model, transform, eval_scenes, st, image_size) for st in ("short", "full")}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    config = {"model_cfg": model_config(image_size), "preprocess_cfg": preprocess_config()}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    write_recipe(out, _key(seed, image_size, seconds, max_steps), stats, prep_seconds, recall, len(eval_scenes),
                 batch_size=BATCH_SIZE, pool_size=POOL_SIZE, small_image_size=small_size,
                 small_steps=batches.small_steps)
    return out


def load_or_train_shapes_resnet_clip(
    cache_dir: str | Path,
    seconds: float = TRAIN_SECONDS_CAP,
    seed: int = 0,
    image_size: int = IMAGE_SIZE,
    max_steps: int | None = TRAIN_STEPS,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Return a finished model directory under ``cache_dir``, training it only if needed.

    Training happens in a temporary sibling directory that is renamed into place
    when complete, so an interrupted run never leaves a half-written model.
    """
    key = _key(seed, image_size, seconds, max_steps)
    return cached_model(model_folder(cache_dir, key), key, lambda tmp: train_shapes_resnet_clip(
        tmp, seconds=seconds, seed=seed, image_size=image_size, max_steps=max_steps, log=log))


def _key(seed: int, image_size: int, seconds: float, max_steps: int | None) -> dict:
    return recipe_key(seed, image_size, seconds, max_steps, recipe=RECIPE_NAME, version=RECIPE_VERSION)
