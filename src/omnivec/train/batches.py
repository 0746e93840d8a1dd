"""Training batches for the shapes recipes: random scenes from a pre-rendered pool, each with a caption in a random
style, and the mask of every image each caption fits."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from .contrastive import ContrastiveBatch
from .shapes import CAPTION_TEMPLATES, Scene, concept_names, template_attributes

ATTRIBUTES = ("shape", "colour", "size", "background")

# texts -> (input_ids, attention_mask), both (len(texts), length)
Tokenize = Callable[[Sequence[str]], tuple[torch.Tensor, torch.Tensor]]


class ShapesBatches:
    """``batches(step)`` gives ``batch_size`` distinct scenes, each captioned in a style drawn with ``style_weights``
    (uniform when not given).

    ``positives`` marks every image a caption fits: two red circles in one batch both fit "a red circle", and "a
    circle" fits every circle. So captions that fit several images are not pushed away from all but one of them.
    All captions are tokenised once, up front; ``input_ids`` is (scenes, styles, length).

    With ``small_pixels`` (the same scenes rendered smaller) the first ``small_steps`` batches use those instead:
    progressive resizing, cheaper early steps that learn what needs no detail. The random draws are the same.
    """

    def __init__(self, scenes: Sequence[Scene], pixels: torch.Tensor, tokenize: Tokenize, batch_size: int, seed: int,
                 styles: Mapping[str, str] = CAPTION_TEMPLATES, style_weights: Mapping[str, float] | None = None,
                 small_pixels: torch.Tensor | None = None, small_steps: int = 0):
        if small_steps and (small_pixels is None or len(small_pixels) != len(pixels)):
            raise ValueError("small_steps needs small_pixels of the same scenes as pixels")
        self.pixels, self.batch_size = pixels, batch_size
        self.small_pixels, self.small_steps = small_pixels, small_steps
        self.rng = np.random.default_rng(seed)
        names = concept_names()
        self.codes = torch.tensor([[names[a].index(getattr(s, a)) for a in ATTRIBUTES] for s in scenes])
        weights = np.array([1.0 if style_weights is None else style_weights[st] for st in styles])
        self.style_p = weights / weights.sum()
        # style -> which attributes its caption pins down
        self.style_mask = torch.tensor([[a in template_attributes(t) for a in ATTRIBUTES] for t in styles.values()])
        ids, mask = tokenize([t.format(**s.attributes()) for s in scenes for t in styles.values()])
        shape = (len(scenes), len(styles), -1)
        self.input_ids, self.attention_mask = ids.view(shape), mask.view(shape)

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the batch's scenes (distinct) and of each one's caption style."""
        idx = self.rng.choice(len(self.pixels), self.batch_size, replace=False)
        return idx, self.rng.choice(len(self.style_p), self.batch_size, p=self.style_p)

    def __call__(self, step: int) -> ContrastiveBatch:
        idx, style = (torch.from_numpy(a) for a in self.draw())
        codes = self.codes[idx]
        same = codes[:, None, :] == codes[None, :, :]  # (text i, image j, attribute)
        positives = (same | ~self.style_mask[style][:, None, :]).all(dim=-1)
        return ContrastiveBatch(input_ids=self.input_ids[idx, style], attention_mask=self.attention_mask[idx, style],
                                pixel_values=(self.small_pixels if step < self.small_steps else self.pixels)[idx],
                                positives=positives)
