"""Backend for open_clip models: built-in architectures with pretrained tags, hub repos and local folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...errors import ConfigError, ModelNotFoundError
from ..config import SpaceConfig
from ..resolve import WEIGHTS, has_weights
from .base import Backend, normalise


class OpenClipBackend(Backend):
    modalities = frozenset({"text", "image", "video"})

    def __init__(self, folder: Path, config: SpaceConfig, device: str = "cpu"):
        try:
            import open_clip
        except ImportError as e:
            raise ConfigError(f"space {config.name!r} needs open_clip: pip install 'omnivec[openclip]'") from e
        if (folder / "open_clip_config.json").is_file():
            if not has_weights(folder, "open_clip"):  # open_clip would only warn and run with random weights
                raise ModelNotFoundError(f"{folder}: open_clip_config.json but no weights file ({WEIGHTS['open_clip']})")
            name = f"local-dir:{folder}"
            model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
        elif folder.is_file() and config.open_clip_model:
            # A bare checkpoint file for a built-in architecture (open_clip's pretrained=<file> path).
            name = config.open_clip_model
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(folder), device=device, **_tag_preprocess(open_clip, config))
        else:
            raise ConfigError(f"{folder}: not an open_clip model (no open_clip_config.json, and not a checkpoint "
                              "file of a named architecture)")
        self.model = model.eval()
        self.device = device
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(name)
        self.model_id = config.hub_id or config.open_clip_model or str(folder)
        self.text_length = int(self.tokenizer.context_length)
        self.max_text_tokens = self.text_length - 2
        self.image_size = _image_size(model)
        self.dim = int(self.encode_text(["a"]).shape[1])

    def count_tokens(self, texts: list[str]) -> list[int]:
        tok = self.tokenizer
        with self.tokenizer_lock:
            if hasattr(tok, "encode"):           # open_clip's CLIP BPE tokenizer
                return [len(tok.encode(t)) for t in texts]
            ids = tok.tokenizer(texts, add_special_tokens=False)["input_ids"]  # HFTokenizer wrapper (SigLIP etc.)
        return [len(x) for x in ids]

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        with self.tokenizer_lock:
            tokens = self.tokenizer(texts)
        return normalise(self.model.encode_text(tokens.to(self.device)))

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image)

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        return normalise(self.model.encode_image(pixels.to(self.device)))


def _tag_preprocess(open_clip, config: SpaceConfig) -> dict:
    # A checkpoint saved from a pretrained tag needs that tag's mean/std/interpolation.
    cfg = open_clip.get_pretrained_cfg(config.open_clip_model, config.open_clip_pretrained or "") or {}
    keys = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation",
            "resize_mode": "image_resize_mode"}
    return {v: cfg[k] for k, v in keys.items() if k in cfg}


def _image_size(model) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)
