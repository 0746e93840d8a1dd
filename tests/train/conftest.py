"""Fixtures shared by the tests of the trained shapes models: each module names its model in a ``model_dir`` fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnivec.train import read_recipe
from omnivec.train.shapes import Scene, evaluation_scenes

EVAL_SEED = 2024  # not the seed whose held-out recall the recipe records itself


@pytest.fixture(scope="module", autouse=True)
def offline():
    # Everything must load from the directory alone; there is no hub here.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def cache_dir(omnivec_home: Path) -> Path:
    return omnivec_home / "models"


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[list[Scene], list[Path]]:
    """One held-out scene per (colour, shape), written to PNG files at the model's image size."""
    image_size = read_recipe(model_dir)["image_size"]
    scenes = evaluation_scenes(seed=EVAL_SEED, split="heldout")
    folder = tmp_path_factory.mktemp("heldout_png")
    paths = []
    for i, scene in enumerate(scenes):
        path = folder / f"{i:02d}_{scene.colour}_{scene.shape}.png"
        scene.render(image_size).save(path)
        paths.append(path)
    return scenes, paths
