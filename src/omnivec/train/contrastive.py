"""Small CLIP-style contrastive training (symmetric InfoNCE, learnable temperature).

Works with a transformers ``CLIPModel`` (or anything exposing the same
``get_text_features`` / ``get_image_features`` / ``logit_scale``). Thread count is
left to the caller (``torch.set_num_threads``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the temperature at 1/100


@dataclass
class ContrastiveBatch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    pixel_values: torch.Tensor  # (B, 3, H, W)
    # positives[i, j]: text i also describes image j (duplicate captions in a batch are
    # not negatives). None means the diagonal only, i.e. plain CLIP.
    positives: torch.Tensor | None = None


@dataclass
class TrainStats:
    steps: int
    final_loss: float
    seconds: float
    logit_scale: float
    losses: list[float] = field(default_factory=list)  # one per step


def _features(output: object) -> torch.Tensor:
    # transformers 5 returns an output object whose pooler_output is the projected embedding.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return F.normalize(tensor, dim=-1)


def embed_batch(model: torch.nn.Module, batch: ContrastiveBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised (text, image) embeddings for a batch."""
    text = _features(model.get_text_features(input_ids=batch.input_ids, attention_mask=batch.attention_mask))
    image = _features(model.get_image_features(pixel_values=batch.pixel_values))
    return text, image


def contrastive_loss(
    text: torch.Tensor, image: torch.Tensor, logit_scale: torch.Tensor, positives: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE; with ``positives`` the target is uniform over all positives."""
    logits = logit_scale.exp() * text @ image.T
    if positives is None:
        labels = torch.arange(len(text), device=text.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    pos = positives.to(logits.dtype)
    t2i = pos / pos.sum(dim=1, keepdim=True)
    i2t = pos.T / pos.T.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, t2i) + F.cross_entropy(logits.T, i2t)) / 2


def lr_factor(progress: float, step: int, warmup_steps: int, schedule: str, cooldown: float = 0.0) -> float:
    """Linear warmup, then constant or cosine decay over ``progress`` in [0, 1]; with ``cooldown`` > 0 the rate also
    falls linearly to zero over that last fraction of the run (warmup-stable-decay)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    tail = min(1.0, (1.0 - progress) / cooldown) if cooldown > 0 else 1.0
    if schedule == "constant":
        return tail
    if schedule == "cosine":
        return tail * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    raise ValueError(f"unknown schedule {schedule!r}")


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # As in CLIP: no decay on biases, norms, embeddings or the temperature.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_contrastive(
    model: torch.nn.Module,
    batches: Iterable[ContrastiveBatch] | Callable[[int], ContrastiveBatch],
    *,
    max_steps: int | None = None,
    seconds: float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup_steps: int = 20,
    schedule: str = "cosine",
    cooldown: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.98),
    grad_clip: float | None = 1.0,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    log_every: int = 50,
) -> TrainStats:
    """Train until ``max_steps`` or ``seconds`` of wall clock, whichever comes first.

    ``batches`` is an iterable of batches or a function ``step -> batch``. The cosine
    schedule follows whichever budget is closer to exhaustion, so a wall-clock run
    still ends with a decayed learning rate.
    """
    if max_steps is None and seconds is None:
        raise ValueError("give max_steps, seconds, or both")
    torch.manual_seed(seed)
    next_batch = _batch_source(batches)
    optimizer = _adamw(_param_groups(model, weight_decay), lr, betas)
    model.train()
    losses: list[float] = []
    start = time.perf_counter()
    step = 0
    while True:
        elapsed = time.perf_counter() - start
        progress = max(step / max_steps if max_steps else 0.0, elapsed / seconds if seconds else 0.0)
        if progress >= 1.0:
            break
        batch = next_batch(step)
        if batch is None:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(progress, step, warmup_steps, schedule, cooldown)
        loss = _train_step(model, optimizer, batch, grad_clip)
        losses.append(loss)
        step += 1
        if log and step % log_every == 0:
            log(f"step {step} loss {loss:.4f} scale {model.logit_scale.exp().item():.1f} t={elapsed:.1f}s")
    model.eval()
    seconds_used = time.perf_counter() - start
    final = sum(losses[-10:]) / len(losses[-10:]) if losses else float("nan")
    return TrainStats(step, final, seconds_used, float(model.logit_scale.detach().exp()), losses)


def _train_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: ContrastiveBatch, grad_clip: float | None
) -> float:
    text, image = embed_batch(model, batch)
    loss = contrastive_loss(text, image, model.logit_scale, batch.positives)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)
    return float(loss.detach())


def _adamw(groups: list[dict], lr: float, betas: tuple[float, float]) -> torch.optim.Optimizer:
    # On CPU torch defaults to the per-tensor loop, which walks the (mostly unused)
    # 49408-row token embedding several times per step; the fused kernel is ~5x cheaper.
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-6, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=1e-6)


def _batch_source(
    batches: Iterable[ContrastiveBatch] | Callable[[int], ContrastiveBatch],
) -> Callable[[int], ContrastiveBatch | None]:
    if callable(batches):
        return batches
    iterator: Iterator[ContrastiveBatch] = iter(batches)
    return lambda _step: next(iterator, None)
