"""Windows and pooling.

Text longer than the model's token limit is split at word boundaries into windows of at most `max_tokens`
tokens (consecutive windows share about `overlap` tokens), each window is embedded, and the text's vector is the
token-weighted mean of the window vectors, re-normalised ("mean"), or the first window alone ("first").
Audio is cut into fixed windows from t=0 (no random crops) and video frames are grouped into fixed segments; both
pool their parts by a duration-weighted mean, re-normalised."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass
class Window:
    start: float
    end: float
    weight: float


def text_windows(text: str, count: Callable[[list[str]], list[int]], max_tokens: int, overlap: int = 8,
                 first_only: bool = False) -> list[tuple[str, int]]:
    """Split `text` into (window_text, n_tokens) pieces of at most max_tokens tokens each."""
    total = count([text])[0]
    if total <= max_tokens:
        return [(text, total)]
    words = text.split()
    sizes = count(words)
    windows, i = [], 0
    while i < len(words):
        j, used = i, 0
        while j < len(words) and used + sizes[j] <= max_tokens:
            used += sizes[j]
            j += 1
        if j == i:  # one "word" longer than a window (a URL, a run of symbols): it is cut by the tokenizer
            j, used = i + 1, max_tokens
        piece = " ".join(words[i:j])
        n = count([piece])[0]
        while n > max_tokens and j - i > 1:  # word counts are not always additive across word boundaries
            j -= 1
            piece = " ".join(words[i:j])
            n = count([piece])[0]
        windows.append((piece, min(n, max_tokens)))
        if first_only or j >= len(words):
            break
        back, k = 0, j  # step back so the next window repeats about `overlap` tokens
        while k - 1 > i + 1 and back + sizes[k - 1] <= overlap:
            k -= 1
            back += sizes[k]
        i = k
    return windows


def time_windows(duration: float, window: float, hop: float | None = None, min_tail: float = 1.0) -> list[Window]:
    """Fixed windows [start, end) covering `duration` seconds from t=0."""
    hop = hop or window
    if duration <= window:
        return [Window(0.0, duration, duration)]
    out, start = [], 0.0
    while start < duration:
        end = min(start + window, duration)
        if end - start >= min_tail or not out:
            out.append(Window(round(start, 6), round(end, 6), end - start))
        if end >= duration:
            break
        start += hop
    return out


def pool(vectors: np.ndarray, weights: list[float] | np.ndarray | None = None) -> np.ndarray:
    """Weighted mean of unit vectors, re-normalised to unit length."""
    w = np.ones(len(vectors), np.float32) if weights is None else np.asarray(weights, np.float32)
    v = (vectors * w[:, None]).sum(axis=0)
    n = float(np.linalg.norm(v))
    return (v / n if n > 0 else v).astype(np.float32)
