"""The learning-rate schedules of the contrastive trainer (train/contrastive.py): warmup, then constant or cosine,
optionally with a linear cooldown to zero at the end."""

from __future__ import annotations

import pytest

from omnivec.train.contrastive import lr_factor


def factors(schedule: str, cooldown: float = 0.0, steps: int = 1000, warmup: int = 20) -> list[float]:
    return [lr_factor(step / steps, step, warmup, schedule, cooldown) for step in range(steps)]


def test_constant_with_cooldown_holds_then_falls_linearly_to_zero() -> None:
    f = factors("constant", cooldown=0.2)
    assert f[0] == pytest.approx(1 / 20) and f[19] == 1.0          # warmup
    assert all(x == 1.0 for x in f[20:800]) and f[800] == pytest.approx(1.0)  # stable until the last fifth
    assert f[900] == pytest.approx(0.5) and f[999] == pytest.approx(0.005)
    assert all(a > b for a, b in zip(f[800:], f[801:]))            # strictly falling through the cooldown


def test_cooldown_scales_the_cosine_schedule_and_zero_cooldown_changes_nothing() -> None:
    cosine, cooled = factors("cosine"), factors("cosine", cooldown=0.5)
    assert cooled[:501] == cosine[:501]
    assert cooled[750] == pytest.approx(cosine[750] * 0.5)
    assert factors("constant", cooldown=0.0)[20:] == [1.0] * 980
    with pytest.raises(ValueError, match="unknown schedule"):
        lr_factor(0.5, 100, 20, "linear")
