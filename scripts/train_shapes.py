"""Train a shapes CLIP recipe once and print its held-out recall@1 on several held-out sets, as JSON.

    python scripts/train_shapes.py --recipe resnet --seed 1            # the figures in docs/training.md
    python scripts/train_shapes.py --recipe resnet --steps 400 --set BATCH_SIZE=256 --set LR=0.0015

`--set` overrides a recipe constant for this run only (the model is written to a temporary folder, never to the cache).
"""

from __future__ import annotations

import argparse
import ast
import json
import tempfile
import time

import torch

from omnivec.train import read_recipe, recipes, resnet_recipe
from omnivec.train.shapes import evaluation_scenes

RECIPES = {"vit": (recipes, recipes.train_shapes_clip), "resnet": (resnet_recipe, resnet_recipe.train_shapes_resnet_clip)}
STYLES = ("short", "full")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="resnet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the recipe's TRAIN_STEPS")
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[0, 2024, 7])
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    module, train = RECIPES[args.recipe]
    for item in args.set:
        name, _, value = item.partition("=")
        if not hasattr(module, name):
            parser.error(f"--set {item}: the {args.recipe} recipe has no constant {name!r}")
        setattr(module, name, ast.literal_eval(value))
    steps = args.steps or module.TRAIN_STEPS
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        train(out, seed=args.seed, max_steps=steps)
        wall = time.perf_counter() - start
        recipe = read_recipe(out)
        recall = {str(s): _recall(args.recipe, out, s) for s in args.eval_seeds}
    print(json.dumps({"recipe": args.recipe, "seed": args.seed, "steps": recipe["steps"], "set": args.set,
                      "train_seconds": recipe["train_seconds"], "prep_seconds": recipe["prep_seconds"],
                      "wall_seconds": round(wall, 1), "heldout_recall_at_1": recall}, indent=2))


def _recall(recipe: str, folder: str, eval_seed: int) -> dict:
    scenes = evaluation_scenes(eval_seed, split="heldout")
    if recipe == "resnet":
        import open_clip

        model, _, transform = open_clip.create_model_and_transforms(f"local-dir:{folder}")
        size = read_recipe(folder)["image_size"]
        return {st: round(resnet_recipe.text_to_image_recall(model.eval(), transform, scenes, st, size), 3)
                for st in STYLES}
    from transformers import AutoModel, AutoProcessor

    model, processor = AutoModel.from_pretrained(folder).eval(), AutoProcessor.from_pretrained(folder)
    return {st: round(recipes.text_to_image_recall(model, processor, scenes, st), 3) for st in STYLES}


if __name__ == "__main__":
    main()
