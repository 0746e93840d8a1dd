"""A generated "concept world" where each concept has a look and a sound.

Eight concepts, each a distinct colour and shape of the shapes world (its look, drawn by ``shapes.Scene``) and a
distinct tone pattern (its sound): a base pitch, a pulse rhythm and a chirp. Every rendering jitters pitch, tempo,
onset, loudness and length and adds noise, so a model has to learn the pattern, not one waveform.

Captions name the concept ("a red circle", "the sound of a red circle"); they are the only link between sounds and
looks: an audio-text model learns sound <-> caption, an image-text model learns look <-> caption, and a bound space
(spaces/bound.py) connects the two through text alone.

Held-out honesty: the "train" and "heldout" splits draw from separate random streams, so held-out renderings never
repeat a training rendering's jitter, noise or placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .shapes import COLOURS, SIZES, Scene

SAMPLE_RATE = 16_000
SECONDS = (1.5, 2.0)          # a rendering's length is drawn from this range
PITCH_JITTER = 0.04           # +-4 %; neighbouring concepts are >= 40 % apart in pitch
TEMPO_JITTER = 0.10
SNR_DB = (6.0, 20.0)          # white noise, signal-to-noise ratio per rendering
LEVEL = (0.2, 0.8)            # peak amplitude of the tone


@dataclass(frozen=True)
class Concept:
    colour: str
    shape: str
    base_hz: float            # pitch of the tone
    pulses_per_second: float  # rhythm: the tone is gated on and off this often
    chirp: float              # pitch ratio from the start to the end of each pulse (1: steady)
    overtone: float           # level of the second harmonic, relative to the fundamental

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


# Distinct colours (the shapes model's reliable key); pitches log-spaced 260 Hz .. 3.1 kHz; rhythms and chirps vary.
CONCEPTS: tuple[Concept, ...] = (
    Concept("red", "circle", 260.0, 2.0, 1.0, 0.0),
    Concept("green", "square", 370.0, 5.0, 1.5, 0.3),
    Concept("blue", "triangle", 530.0, 3.0, 0.7, 0.0),
    Concept("yellow", "star", 760.0, 8.0, 1.0, 0.5),
    Concept("purple", "cross", 1080.0, 2.5, 1.4, 0.2),
    Concept("orange", "circle", 1540.0, 6.0, 0.75, 0.0),
    Concept("white", "square", 2200.0, 4.0, 1.0, 0.4),
    Concept("black", "triangle", 3100.0, 3.5, 1.25, 0.0),
)
assert sorted(c.colour for c in CONCEPTS) == sorted(COLOURS)

SOUND_CAPTIONS: dict[str, str] = {
    "name": "a {colour} {shape}",
    "sound": "the sound of a {colour} {shape}",
    "tone": "a {colour} {shape} tone",
    "hear": "you hear a {colour} {shape}",
}
# Sentences both an image-text and an audio-text model can embed; `binding_corpus` fills them in.
CORPUS_TEMPLATES: tuple[str, ...] = (
    "a {colour} {shape}", "the {colour} {shape}", "a picture of a {colour} {shape}", "a photo of the {colour} {shape}",
    "the sound of a {colour} {shape}", "a {colour} {shape} tone", "you hear a {colour} {shape}",
    "a {size} {colour} {shape}", "a {colour} {shape} on {background}",
    "a {colour} {shape} on a {background} background",
    "a {size} {colour} {shape} on a {background} background", "a {colour} {shape}, {size}",
    "listen: a {colour} {shape}", "this is a {colour} {shape}", "one {colour} {shape}", "{colour} {shape}",
)

Split = Literal["train", "heldout"]
_SPLIT_STREAM = {"train": 0, "heldout": 1}


@dataclass(frozen=True)
class Sound:
    """One rendering of a concept's tone pattern; ``render`` is deterministic in these fields."""

    concept: Concept
    pitch: float       # multiplies the concept's base pitch
    tempo: float       # multiplies its pulse rate
    onset: float       # phase of the pulse train, in pulses
    seconds: float
    level: float
    snr_db: float
    noise_seed: int

    def caption(self, style: str = "name") -> str:
        return SOUND_CAPTIONS[style].format(colour=self.concept.colour, shape=self.concept.shape)

    def render(self, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        c = self.concept
        t = np.arange(int(round(self.seconds * sample_rate))) / sample_rate
        rate = c.pulses_per_second * self.tempo
        cycle = t * rate + self.onset
        within = cycle - np.floor(cycle)                      # 0..1 position inside the current pulse
        gate = np.clip(np.minimum(within, 0.6 - within) / 0.05, 0.0, 1.0)  # on for 60 % of a pulse, soft edges
        # The chirp glides exponentially within each pulse; integrate the instantaneous frequency for the phase.
        freq = c.base_hz * self.pitch * c.chirp ** np.minimum(within / 0.6, 1.0)
        phase = 2 * np.pi * np.cumsum(freq) / sample_rate
        tone = np.sin(phase) + c.overtone * np.sin(2 * phase)
        tone = self.level * gate * tone / (1.0 + c.overtone)
        rng = np.random.default_rng(self.noise_seed)
        signal_power = float(np.mean(tone**2)) or 1e-8
        noise = rng.normal(0.0, np.sqrt(signal_power / 10 ** (self.snr_db / 10)), len(t))
        return np.clip(tone + noise, -1.0, 1.0).astype(np.float32)


def _rng(seed: int, split: Split) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_STREAM[split], 7])  # 7: not the shapes world's streams


def _sound(rng: np.random.Generator, concept: Concept) -> Sound:
    return Sound(concept, pitch=float(rng.uniform(1 - PITCH_JITTER, 1 + PITCH_JITTER)),
                 tempo=float(rng.uniform(1 - TEMPO_JITTER, 1 + TEMPO_JITTER)), onset=float(rng.uniform()),
                 seconds=float(rng.uniform(*SECONDS)), level=float(rng.uniform(*LEVEL)),
                 snr_db=float(rng.uniform(*SNR_DB)), noise_seed=int(rng.integers(2**31)))


def sample_sounds(per_concept: int, seed: int = 0, split: Split = "train") -> list[Sound]:
    """``per_concept`` renderings of every concept, concept-major; deterministic in (per_concept, seed, split)."""
    rng = _rng(seed, split)
    return [_sound(rng, c) for c in CONCEPTS for _ in range(per_concept)]


def sample_looks(per_concept: int, seed: int = 0, split: Split = "train") -> list[Scene]:
    """``per_concept`` pictures of every concept (concept-major): fresh size, place, angle and background."""
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split], 11])
    looks = []
    for c in CONCEPTS:
        for _ in range(per_concept):
            size = str(rng.choice(list(SIZES)))
            radius = float(rng.uniform(*SIZES[size]))
            x, y = (float(v) for v in rng.uniform(radius, 1.0 - radius, size=2))
            background = str(rng.choice([b for b in COLOURS if b != c.colour]))
            looks.append(Scene(c.shape, c.colour, size, background, x, y, radius, float(rng.uniform(-20, 20))))
    return looks


def binding_corpus() -> list[str]:
    """Captions over the concept names (no sounds, no pictures): the text two models are bound through."""
    out = []
    for c in CONCEPTS:
        for template in CORPUS_TEMPLATES:
            for size in (SIZES if "{size}" in template else ("",)):
                for bg in ([b for b in COLOURS if b != c.colour] if "{background}" in template else ("",)):
                    out.append(template.format(colour=c.colour, shape=c.shape, size=size, background=bg))
    return list(dict.fromkeys(out))
