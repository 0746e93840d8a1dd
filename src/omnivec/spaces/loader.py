"""`load_space`: the one entry point for every kind of space. Above the factory (one model) and bound spaces
(two models joined by `omnivec bind`, which loads its two models through the factory), so neither imports the
other's caller."""
from __future__ import annotations

import os

from ..media import DEFAULT_LIMITS, Limits
from .bound import is_bound_folder, load_bound_space
from .factory import load_model_space, resolve_device
from .space import Space


def load_space(name: str | os.PathLike, *, model_path: str | os.PathLike | None = None, revision: str | None = None,
               device: str | None = None, audio_space: "Space | str | None" = None, limits: Limits = DEFAULT_LIMITS,
               batch_size: int = 32, workers: int | None = None, overrides: dict | None = None) -> Space:
    """Load a space.

    name: a built-in name (`omnivec spaces`), a Hugging Face repo id ("openai/clip-vit-base-patch32"),
    "open_clip:ViT-B-32/laion2b_s34b_b79k", a local folder in hub layout (transformers or open_clip), or a folder
    written by `omnivec bind`.
    model_path: a local copy of the weights for a named space (skips the hub).
    device: "cpu", "cuda", "cuda:1", "mps"; default $OMNIVEC_DEVICE, else "cuda" when torch sees a GPU, else "cpu".
    audio_space: a space (or its name) that embeds the sound track of videos.
    overrides: option changes, e.g. {"video": {"fps": 2}, "image": {"reduced_decode": False}}.
    """
    if model_path is None and is_bound_folder(name):
        return load_bound_space(name, device=resolve_device(device), limits=limits, batch_size=batch_size,
                                workers=workers, overrides=overrides)
    return load_model_space(name, model_path=model_path, revision=revision, device=device, audio_space=audio_space,
                            limits=limits, batch_size=batch_size, workers=workers, overrides=overrides)
