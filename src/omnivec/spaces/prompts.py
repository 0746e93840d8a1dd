"""Prompt templates for class names. An ensemble averages a label's template vectors, as in the CLIP paper."""
from __future__ import annotations

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a close-up photo of a {}.",
    "a photo of the {}.",
)

AUDIO_TEMPLATES: tuple[str, ...] = ("{}", "the sound of {}.", "a recording of {}.")


def expand(label: str, templates: tuple[str, ...] | list[str]) -> list[str]:
    return [t.format(label) if "{}" in t else f"{t} {label}" for t in templates]
