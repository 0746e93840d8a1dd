"""Declarative space configs: a model is a JSON entry, not a class. Registry = the JSON files in configs/."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources

from ..errors import ConfigError

BACKENDS = ("transformers", "open_clip", "imagebind")
# Model arithmetic: fp32 as trained; bf16/fp16 run the forward pass under torch.autocast (fp16: GPUs only).
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TextOptions:
    # Long texts are split into windows of at most the model's token limit and pooled (see pooling.py).
    pooling: str = "mean"          # "mean": token-weighted mean of window vectors; "first": first window only
    overlap_tokens: int = 8        # tokens repeated between consecutive windows, so no phrase is cut in two
    max_tokens: int | None = None  # None: the tokenizer's own limit
    padding: str = "max_length"    # fixed-shape batches keep vectors independent of batch companions


@dataclass(frozen=True)
class ImageOptions:
    # JPEGs at least twice the model's input size are decoded at 1/2, 1/4 or 1/8 scale by libjpeg (DCT scaling),
    # and any image still 4x the input size or more (PNG, WebP, TIFF, arrays) is box-reduced by a whole factor:
    # several times faster on photos, at a cosine of about 0.99+ to a full decode. False: every pixel reaches the
    # processor, for exact parity with the reference pipeline.
    reduced_decode: bool = True


@dataclass(frozen=True)
class AudioOptions:
    window_seconds: float | None = None  # None: the feature extractor's max length (CLAP: 10 s)
    hop_seconds: float | None = None     # None: windows do not overlap
    min_tail_seconds: float = 1.0        # a shorter last window is dropped (unless it is the only one)


@dataclass(frozen=True)
class VideoOptions:
    fps: float = 1.0                 # frames sampled per second
    segment_seconds: float = 5.0     # frames are pooled into segments of this length
    skip_blank: bool = True


@dataclass(frozen=True)
class SpaceConfig:
    name: str
    backend: str
    hub_id: str | None = None          # transformers: repo id; open_clip: repo id holding open_clip_config.json
    revision: str = "main"
    open_clip_model: str | None = None  # open_clip: built-in architecture name (used with open_clip_pretrained)
    open_clip_pretrained: str | None = None
    architecture: dict | None = None    # imagebind: ImageBindModel sizes (keyword arguments)
    modalities: tuple[str, ...] = ("text", "image", "video")
    dim: int | None = None
    licence: str = "unknown"
    description: str = ""
    config_version: int = 1             # bump when preprocessing or pooling defaults change
    precision: str = "fp32"             # see PRECISIONS; anything but fp32 is part of the version string
    text: TextOptions = field(default_factory=TextOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    audio: AudioOptions = field(default_factory=AudioOptions)
    video: VideoOptions = field(default_factory=VideoOptions)

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"space {self.name!r}: backend must be one of {BACKENDS}, got {self.backend!r}")
        if not self.hub_id and not self.open_clip_model:
            raise ConfigError(f"space {self.name!r}: needs hub_id or open_clip_model")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"space {self.name!r}: precision must be one of {PRECISIONS}, got {self.precision!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "SpaceConfig":
        d = dict(d)
        try:
            d["modalities"] = tuple(d.get("modalities", cls.modalities))
            d["text"] = TextOptions(**d.get("text", {}))
            d["image"] = ImageOptions(**d.get("image", {}))
            d["audio"] = AudioOptions(**d.get("audio", {}))
            d["video"] = VideoOptions(**d.get("video", {}))
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"space config {d.get('name', '?')!r}: {e}") from e

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, overrides: dict | None) -> "SpaceConfig":
        """A copy with some options changed, e.g. {"video": {"fps": 2}, "text": {"pooling": "first"}}."""
        if not overrides:
            return self
        d = self.to_dict()
        for key, value in overrides.items():
            if key not in d:
                raise ConfigError(f"space {self.name!r}: unknown option {key!r}")
            d[key] = {**d[key], **value} if isinstance(d[key], dict) else value
        return SpaceConfig.from_dict(d)


@lru_cache(maxsize=1)
def registry() -> dict[str, SpaceConfig]:
    """The built-in spaces, read from the JSON files shipped in omnivec/spaces/configs/."""
    out = {}
    for entry in sorted(resources.files(__package__).joinpath("configs").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".json"):
            cfg = SpaceConfig.from_dict(json.loads(entry.read_text()))
            out[cfg.name] = cfg
    return out


def list_spaces() -> list[SpaceConfig]:
    return list(registry().values())
