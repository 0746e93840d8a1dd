"""What a backend does: tokenise and encode text, preprocess and encode images and audio windows.

Backends return L2-normalised float32 numpy arrays and nothing framework-specific leaks past the Space."""
from __future__ import annotations

import contextlib
import os
import threading
from abc import ABC, abstractmethod

# Set again here for code that imports a backend module directly (see omnivec/__init__.py for why).
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

import numpy as np
import torch
from PIL import Image


class Backend(ABC):
    modalities: frozenset[str]
    model_id: str
    dim: int
    max_text_tokens: int         # content tokens per window (special tokens excluded)
    image_size: int | None = None
    sample_rate: int | None = None
    audio_window_seconds: float | None = None
    # Fast tokenizers keep padding/truncation settings as shared state: token counting on the decode threads and
    # tokenising for the model at the same time corrupt each other's batches. Every tokenizer call holds this.
    # One lock for all backends: tokenising is cheap next to the forward pass, which runs outside it.
    tokenizer_lock = threading.Lock()

    @abstractmethod
    def count_tokens(self, texts: list[str]) -> list[int]:
        """Content tokens of each text, without special tokens and without truncation."""

    @abstractmethod
    def encode_text(self, texts: list[str]) -> np.ndarray: ...

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        raise NotImplementedError

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        raise NotImplementedError

    def preprocess_audio(self, wave: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def encode_audio(self, features: list[dict[str, torch.Tensor]]) -> np.ndarray:
        raise NotImplementedError


def normalise(x: torch.Tensor) -> np.ndarray:
    x = x.detach().float()
    return torch.nn.functional.normalize(x, dim=-1).cpu().numpy().astype(np.float32, copy=False)


def precision_context(precision: str, device: str):
    """The context a forward pass runs in: nothing for fp32, else torch.autocast to bf16/fp16 on the device. On CPUs
    with AMX or AVX-512 BF16, bf16 runs ViT-B/32 about 3x faster (docs/benchmarks.md)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
