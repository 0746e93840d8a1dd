"""`omnivec demo`: index a sample folder and answer cross-modal queries.

With pretrained weights reachable it uses the default space. Offline, and only here, it falls back to the small
CLIP that omnivec trains itself on generated shapes, and says so."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import typer

from ..errors import ModelNotFoundError
from ..spaces import Embedding, load_space
from .output import emit_json, err, out, table

DEFAULT_SPACE = "clip-vit-b-32"


def omnivec_home() -> Path:
    return Path(os.environ.get("OMNIVEC_HOME", "~/.omnivec")).expanduser()


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        folder: Path = typer.Option(None, "--folder", help="Folder to index (default: a generated sample folder)."),
        space: str = typer.Option(DEFAULT_SPACE, "--space", "-s"),
        k: int = typer.Option(3, "-k", min=1, help="Hits per query."),
        train_seconds: float = typer.Option(None, "--train-seconds",
                                            help="Training budget of the fallback model (default: the recipe's)."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Index a sample folder of images and videos, then search it by text, by image and for video moments."""
        from ..samples import make_sample_folder

        sp, note = _space_for_demo(space, train_seconds, quiet=json_out)
        folder = folder or make_sample_folder(omnivec_home() / "demo" / "sample")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        t0 = time.perf_counter()
        results = sp.embed_items([str(p) for p in files], on_error="return", progress=not json_out)
        indexed = [r for r in results if isinstance(r, Embedding)]
        failed = [r for r in results if not isinstance(r, Embedding)]
        seconds = time.perf_counter() - t0
        queries = _queries(sp, indexed, k)
        report = {"space": sp.describe(), "note": note, "folder": str(folder), "indexed": len(indexed),
                  "failed": [f.to_dict() for f in failed], "seconds": round(seconds, 2), "queries": queries}
        if json_out:
            emit_json(report)
        else:
            out.print(f"[bold]{note}[/bold]")
            out.print(f"indexed {len(indexed)} files from {folder} in {seconds:.1f} s ({len(failed)} failed)")
            for q in queries:
                table(f"{q['kind']}: {q['query']}", ["rank", "score", "item", "time"],
                      [[i + 1, h["score"], Path(h["item"]).name, _span(h)] for i, h in enumerate(q["hits"])])
            hits = [q for q in queries if q.get("expected")]
            good = sum(q["top1_matches"] for q in hits)
            out.print(f"top-1 hit shows the queried concept for {good} of {len(hits)} queries")


def _space_for_demo(name: str, train_seconds: float, quiet: bool):
    try:
        sp = load_space(name)
        return sp, f"Using the pretrained space {name} ({sp.model})."
    except ModelNotFoundError as e:
        from ..train.recipes import load_or_train_shapes_clip

        note = (f"No pretrained weights are reachable for {name}: {str(e).split(': ', 1)[-1].split('. Looked')[0]}. "
                "This demo falls back to the small CLIP that omnivec trains itself on generated shapes; it knows "
                "colours and shapes only. Give a local copy with --model-path (omnivec embed) or "
                "OMNIVEC_MODEL_DIR to use real weights.")
        if not quiet:
            err.print(f"[yellow]{note}[/yellow]")
            err.print("training (or reusing) the fallback model ...")
        budget = {"seconds": train_seconds} if train_seconds else {}
        model_dir = load_or_train_shapes_clip(omnivec_home() / "models", **budget)
        return load_space(str(model_dir)), note


def _queries(sp, indexed: list[Embedding], k: int) -> list[dict]:
    from ..samples import CONCEPTS

    if not indexed:
        return []
    # Search units: each image, and each video segment (so a hit can say *when* in the video).
    units = []
    for r in indexed:
        units.append((r, None))
        units.extend((r, s) for s in r.segments)
    matrix = np.stack([(s.vector if s is not None else r.vector) for r, s in units])

    def search(vec: np.ndarray, exclude: str | None = None, segments: bool = False) -> list[dict]:
        scores = matrix @ vec
        hits, seen = [], set()
        for j in np.argsort(-scores, kind="stable"):
            r, s = units[j]
            if r.item == exclude or (s is None) == segments and r.modality == "video" or r.item in seen:
                continue
            seen.add(r.item)
            hits.append({"item": r.item, "modality": r.modality, "score": round(float(scores[j]), 4),
                         **({"start": s.start, "end": s.end} if s is not None else {})})
            if len(hits) == k:
                break
        return hits

    queries = []
    for colour, shape in CONCEPTS[:4]:
        text = f"a {colour} {shape}"
        hits = search(sp.embed_text([text])[0], segments=True)
        queries.append({"kind": "text -> image/video", "query": text, "hits": hits, "expected": f"{colour}-{shape}",
                        "top1_matches": bool(hits) and _shows(hits[0], colour, shape)})
    image = next((r for r in indexed if r.modality == "image"), None)
    if image is not None:
        name = Path(image.item).name
        colour, shape = name.split("-")[:2]
        hits = search(image.vector, exclude=image.item)
        queries.append({"kind": "image -> image", "query": name, "hits": hits, "expected": f"{colour}-{shape}",
                        "top1_matches": bool(hits) and _shows(hits[0], colour, shape)})
    return queries


def _shows(hit: dict, colour: str, shape: str) -> bool:
    """Does the hit show the concept? Images by file name; video segments by which half of the video matched."""
    name = Path(hit["item"]).stem
    if hit["modality"] != "video":
        return name.startswith(f"{colour}-{shape}")
    first, _, second = name.partition("-then-")
    # Sample videos: 1 s black, 4 s of the first concept, 4 s of the second.
    concept = first if hit.get("start", 0) < 5 - 1e-6 else second
    return concept == f"{colour}-{shape}"


def _span(hit: dict) -> str:
    return f"{hit['start']:.0f}-{hit['end']:.0f} s" if "start" in hit else ""
