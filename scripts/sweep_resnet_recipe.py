"""Sweep variants of the ResNet shapes recipe over training seeds, on a GPU or the CPU, and summarise the results.

This is the experiment behind the recipe's batch size and step count (docs/training.md). Each run trains one variant
for one seed and records recall@1 for "a red circle" captions on the held-out sets of seeds 0, 2024 and 7 every 100
steps, one JSON line per run. It samples batches the way `ShapesBatches` does, with knobs the recipe does not expose
(batch size, style weights, a shape-first curriculum, image size, widths, optimiser settings). A GPU gives the same
statistics as the CPU, not the same bits, so read it across seeds, never for one seed.

    # one worker per seed; on the 16-core GPU host the sweep ran 8 at once
    for s in 0 1 2 3 4 5 6 7; do
        python scripts/sweep_resnet_recipe.py run --seed $s --configs cfgs.json --out runs.jsonl --stop-after 290 &
    done; wait
    python scripts/sweep_resnet_recipe.py summarise runs.jsonl

A config is a JSON object; {} is the recipe of version 1 (batch 256, 600 steps). Keys: steps, bs, lr, sched, warm,
wd, betas, clip, size, width, layers, tw, tl, embed, pool, w (style weights), curr (steps of shape-first captions),
lo ([size, steps]: the first steps at a smaller image size), cool (fraction of the run at the end over which the
learning rate falls linearly to zero).
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np
import torch

from omnivec.train import contrastive
from omnivec.train.resnet_recipe import TrainView
from omnivec.train.shapes import CAPTION_TEMPLATES, concept_names, evaluation_scenes, sample_scenes

ATTRS = ("shape", "colour", "size", "background")
EVAL_SEEDS = (0, 2024, 7)
CONTEXT = 16


def _pixels(size: int, images: list, device: str) -> torch.Tensor:
    import open_clip

    transform = open_clip.image_transform(size, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                          std=open_clip.OPENAI_DATASET_STD, interpolation="bicubic",
                                          resize_mode="shortest")
    return torch.stack([transform(i) for i in images]).to(device).contiguous(memory_format=torch.channels_last)


def _tokenize(texts: list[str], device: str) -> torch.Tensor:
    import open_clip

    return open_clip.tokenize(texts, context_length=CONTEXT).to(device)


class Sweep:
    def __init__(self, seed: int, device: str):
        self.seed, self.device = seed, device
        self.pools: dict = {}  # (size, pool) -> (scenes, pixels): shared by the variants of one seed
        self.evals: dict = {}  # size -> {eval seed: (scenes, pixels)}

    def run(self, cfg: dict) -> dict:
        import open_clip

        seed, dev = self.seed, self.device
        size, pool = cfg.get("size", 48), cfg.get("pool", 5000)
        styles = dict(CAPTION_TEMPLATES, shape="a {shape}")
        weights = dict.fromkeys(styles, 1.0) | {"shape": 3.0} | cfg.get("w", {})
        names = list(styles)
        torch.manual_seed(seed)
        model = open_clip.CLIP(
            embed_dim=cfg.get("embed", 64),
            vision_cfg=dict(layers=cfg.get("layers", [1, 1, 1, 1]), width=cfg.get("width", 16), image_size=size),
            text_cfg=dict(context_length=CONTEXT, vocab_size=49408, width=cfg.get("tw", 128), heads=4,
                          layers=cfg.get("tl", 2)))
        for block in model.visual.modules():  # residual branches start open, as in the recipe
            if hasattr(block, "bn3"):
                torch.nn.init.ones_(block.bn3.weight)
        model.to(dev).to(memory_format=torch.channels_last)
        if (size, pool) not in self.pools:
            scenes = sample_scenes(pool, seed=seed, split="train")
            self.pools[(size, pool)] = (scenes, _pixels(size, [s.render(size) for s in scenes], dev))
        scenes, pixels = self.pools[(size, pool)]
        lo_size, lo_steps = cfg.get("lo", (size, 0))  # progressive resizing: the first lo_steps at lo_size px
        if (lo_size, pool) not in self.pools:
            self.pools[(lo_size, pool)] = (scenes, _pixels(lo_size, [s.render(lo_size) for s in scenes], dev))
        lo_pixels = self.pools[(lo_size, pool)][1]
        if size not in self.evals:
            self.evals[size] = {sd: (ev, _pixels(size, [s.render(size) for s in ev], dev))
                                for sd, ev in ((sd, evaluation_scenes(sd, split="heldout")) for sd in EVAL_SEEDS)}
        cn = concept_names()
        codes = torch.tensor([[cn[k].index(getattr(s, k)) for k in ATTRS] for s in scenes], device=dev)
        pins = torch.tensor([[f"{{{k}}}" in styles[st] for k in ATTRS] for st in names], device=dev)
        ids = _tokenize([styles[st].format(**s.attributes()) for s in scenes for st in names], dev)
        ids = ids.view(len(scenes), len(names), -1)
        rng = np.random.default_rng(seed)
        bs, curr = cfg.get("bs", 256), cfg.get("curr", 0)
        p = np.array([weights[st] for st in names])
        p = p / p.sum()
        first = np.array([1.0 if st in ("shape", "short") else 0.0 for st in names])
        first = first / first.sum()

        def batch(step: int) -> contrastive.ContrastiveBatch:
            idx = torch.from_numpy(rng.choice(len(pixels), bs, replace=False)).to(dev)
            style = torch.from_numpy(rng.choice(len(p), bs, p=first if step < curr else p)).to(dev)
            c = codes[idx]
            positives = ((c[:, None, :] == c[None, :, :]) | ~pins[style][:, None, :]).all(dim=-1)
            t = ids[idx, style]
            return contrastive.ContrastiveBatch(input_ids=t, attention_mask=(t != 0).long(),
                                                pixel_values=(lo_pixels if step < lo_steps else pixels)[idx],
                                                positives=positives)

        @torch.no_grad()
        def recall(style: str = "short") -> list[float]:
            out = []
            for ev, ev_pixels in self.evals[size].values():
                t = model.encode_text(_tokenize([s.caption(style) for s in ev], dev), normalize=True)
                i = model.encode_image(ev_pixels, normalize=True)
                hits = (t @ i.T).argmax(1) == torch.arange(len(t), device=dev)
                out.append(round(float(hits.float().mean()), 3))
            return out

        curve = {}

        def log(msg: str) -> None:  # "step N ..." every 100 steps
            model.eval()
            curve[int(msg.split()[1])] = recall()
            model.train()

        start = time.time()
        stats = contrastive.train_contrastive(
            TrainView(model), batch, max_steps=cfg.get("steps", 600), lr=cfg.get("lr", 1.5e-3), log=log,
            log_every=100, grad_clip=cfg.get("clip"), schedule=cfg.get("sched", "constant"),
            warmup_steps=cfg.get("warm", 20), cooldown=cfg.get("cool", 0.0), weight_decay=cfg.get("wd", 0.1),
            seed=seed, betas=tuple(cfg.get("betas", (0.9, 0.98))))
        model.eval()
        return {"cfg": cfg, "seed": seed, "curve": curve, "full": recall("full"), "loss": round(stats.final_loss, 4),
                "sec": round(time.time() - start, 1)}


def summarise(files: list[str]) -> None:
    """Per variant and checkpoint: min / mean recall over all (seed, held-out set) pairs, and seeds at 0.9 on all."""
    runs = [json.loads(line) for f in files for line in open(f, encoding="utf-8") if line.strip()]
    by_cfg = collections.defaultdict(list)
    for r in runs:
        if "curve" in r:
            by_cfg[json.dumps(r["cfg"], sort_keys=True)].append(r)
    for cfg, rs in by_cfg.items():
        cells = []
        for step in sorted({int(s) for r in rs for s in r["curve"]}):
            at = [r["curve"][str(step)] for r in rs if str(step) in r["curve"]]
            flat = [x for v in at for x in v]
            cells.append(f"{step}: {min(flat):.2f}/{sum(flat) / len(flat):.2f}/{sum(min(v) >= 0.9 for v in at)}")
        print(f"{cfg} seeds={len(rs)}  " + "  ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--configs", required=True, help="JSON file: a list of configs")
    run.add_argument("--out", required=True, help="JSON lines file to append to")
    run.add_argument("--stop-after", type=float, default=float("inf"), help="start no run after this many seconds")
    run.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    summ = sub.add_parser("summarise")
    summ.add_argument("files", nargs="+")
    args = parser.parse_args()
    if args.cmd == "summarise":
        return summarise(args.files)
    torch.set_num_threads(2)
    sweep, stop = Sweep(args.seed, args.device), time.time() + args.stop_after
    for cfg in json.load(open(args.configs, encoding="utf-8")):
        if time.time() > stop:
            break
        try:
            result = sweep.run(cfg)
        except Exception as e:  # one failed variant must not end the sweep
            result = {"cfg": cfg, "seed": args.seed, "error": repr(e)}
        with open(args.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
