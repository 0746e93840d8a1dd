"""Plain result types of embedding: what a vector is, which space made it, and which part of the media it covers."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Segment:
    """A window of audio or a segment of video, with its own vector."""

    start: float
    end: float
    vector: np.ndarray


@dataclass
class Embedding:
    item: str                 # the input's name: path, URL or "<text #3>"
    modality: str
    vector: np.ndarray        # unit-length float32; for audio and video the pooled vector of the segments
    space: str
    model: str
    version: str
    segments: list[Segment] = field(default_factory=list)
    info: dict = field(default_factory=dict)   # mime, width/height, duration, tokens, windows ...
    audio: "Embedding | None" = None            # a video's sound track, embedded by the companion audio space
