"""Backend for transformers dual encoders: CLIP, SigLIP/SigLIP 2, CLAP, and kin with get_*_features methods."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...errors import ConfigError
from ..config import SpaceConfig
from .base import Backend, normalise


def _features(out) -> torch.Tensor:
    # transformers 5 returns an output object whose pooler_output is the projected embedding; 4.x a tensor.
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class TransformersBackend(Backend):
    def __init__(self, folder: Path, config: SpaceConfig, device: str = "cpu"):
        from transformers import AutoConfig, AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per model load is noise in a CLI or a server log
        hf_config = AutoConfig.from_pretrained(folder)
        self.model_type = hf_config.model_type
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32).to(device).eval()
        self.device = device
        self.model_id = config.hub_id or str(folder)
        has = {m: hasattr(self.model, f"get_{m}_features") for m in ("text", "image", "audio")}
        if not has["text"]:
            raise ConfigError(f"{folder}: {type(self.model).__name__} has no text tower; omnivec needs a dual encoder")
        mods = {"text"} | ({"image", "video"} if has["image"] else set()) | ({"audio"} if has["audio"] else set())
        self.modalities = frozenset(mods)
        self._load_processors(folder, config)
        self.dim = int(self.encode_text(["a"]).shape[1])

    def _load_processors(self, folder: Path, config: SpaceConfig) -> None:
        from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        limit = config.text.max_tokens or _model_text_limit(self.model, self.tokenizer)
        self.text_length = limit
        self.max_text_tokens = limit - self.tokenizer.num_special_tokens_to_add()
        self.padding = config.text.padding
        if "image" in self.modalities:
            self.image_processor = AutoImageProcessor.from_pretrained(folder)
            self.image_size = _processor_size(self.image_processor)
        if "audio" in self.modalities:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(folder)
            self.sample_rate = int(self.feature_extractor.sampling_rate)
            self.audio_window_seconds = float(self.feature_extractor.nb_max_samples) / self.sample_rate
            # An unfused CLAP takes one mel channel; "fusion" stacks four. Windows never exceed the extractor's
            # max length, so neither mode's random crop is ever taken.
            fused = getattr(getattr(self.model.config, "audio_config", None), "enable_fusion", True)
            self.audio_kwargs = {} if fused else {"truncation": "rand_trunc"}

    def count_tokens(self, texts: list[str]) -> list[int]:
        with self.tokenizer_lock:
            ids = self.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [len(x) for x in ids]

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        # The tokenizer's own model_input_names decide whether an attention mask goes in (SigLIP: none).
        with self.tokenizer_lock:
            tok = self.tokenizer(texts, padding=self.padding, truncation=True, max_length=self.text_length,
                                 return_tensors="pt").to(self.device)
        return normalise(_features(self.model.get_text_features(**tok)))

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        return normalise(_features(self.model.get_image_features(pixel_values=pixels.to(self.device))))

    def preprocess_audio(self, wave: np.ndarray) -> dict[str, torch.Tensor]:
        feats = self.feature_extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt", **self.audio_kwargs)
        return {k: v[0] for k, v in feats.items()}

    @torch.inference_mode()
    def encode_audio(self, features: list[dict[str, torch.Tensor]]) -> np.ndarray:
        batch = {k: torch.stack([f[k] for f in features]).to(self.device) for k in features[0]}
        return normalise(_features(self.model.get_audio_features(**batch)))


def _model_text_limit(model, tokenizer) -> int:
    text_cfg = getattr(model.config, "text_config", None)
    limit = getattr(text_cfg, "max_position_embeddings", None) or tokenizer.model_max_length
    if getattr(model.config, "model_type", "") == "clap":
        limit -= 2  # RoBERTa positions start after the padding index
    return int(min(limit, tokenizer.model_max_length))


def _processor_size(proc) -> int:
    for key in ("crop_size", "size"):
        size = getattr(proc, key, None)
        if size:
            d = size if isinstance(size, dict) else vars(size)
            for k in ("shortest_edge", "height", "width"):
                if d.get(k):
                    return int(d[k])
    return 224
