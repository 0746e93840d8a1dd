"""`omnivec demo`: index a sample folder and answer cross-modal queries.

With pretrained weights reachable it uses the default space. Offline, and only here, it falls back to the small
CLIP that omnivec trains itself on generated shapes, and says so."""
from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ModelNotFoundError
from ..spaces import load_space
from ..store.collection import omnivec_home
from .output import emit_json, err, out, table

DEFAULT_SPACE = "clip-vit-b-32"


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

        from ..ingest import index
        from ..store import open_collection

        sp, note = _space_for_demo(space, train_seconds, quiet=json_out)
        folder = folder or make_sample_folder(omnivec_home() / "demo" / "sample")
        col = open_collection(omnivec_home() / "collections" / f"demo-{sp.name}", space=sp, create=True)
        summary = index(col, [folder], progress=not json_out)
        queries = _queries(col, k)
        report = {"space": sp.describe(), "note": note, "folder": str(folder), "collection": str(col.folder),
                  "indexed": len(col), "run": summary.to_dict(), "failed": [e for e in col.errors()],
                  "queries": queries}
        if json_out:
            emit_json(report)
        else:
            if note.startswith("Using"):   # the offline fallback's notice was printed when it was chosen
                out.print(f"[bold]{note}[/bold]")
            out.print(f"collection {col.folder}: {len(col)} items ({summary.indexed} new this run, "
                      f"{summary.seconds:.1f} s)")
            for q in queries:
                table(f"{q['kind']}: {q['query']}", ["rank", "score", "item", "time"],
                      [[i + 1, h["score"], Path(h["paths"][0]).name, _span(h)] for i, h in enumerate(q["hits"])])
            good = sum(q["top1_matches"] for q in queries)
            out.print(f"top-1 hit shows the queried concept for {good} of {len(queries)} queries")


def _space_for_demo(name: str, train_seconds: float, quiet: bool):
    try:
        sp = load_space(name)
        return sp, f"Using the pretrained space {name} ({sp.model})."
    except ModelNotFoundError as e:
        from ..train.recipes import load_or_train_shapes_clip

        note = (f"No pretrained weights are reachable for {name}: {str(e).split(': ', 1)[-1].split('. Looked')[0]}. "
                "This demo falls back to the small CLIP that omnivec trains itself on generated shapes; it knows "
                "their colours, sizes and backgrounds, and nothing else (each sample concept has its own colour). "
                "Give a local copy with --model-path (omnivec embed) or OMNIVEC_MODEL_DIR to use real weights.")
        if not quiet:
            err.print(f"[yellow]{note}[/yellow]")
            err.print("training (or reusing) the fallback model ...")
        budget = {"seconds": train_seconds} if train_seconds else {}
        model_dir = load_or_train_shapes_clip(omnivec_home() / "models", **budget)
        return load_space(str(model_dir)), note


def _queries(col, k: int) -> list[dict]:
    from ..samples import CONCEPTS, VIDEOS

    queries = []
    for colour, shape in CONCEPTS[:4]:
        text = f"a {colour} {shape}"
        hits = [h.to_dict() for h in col.search(text, k=k)]
        queries.append({"kind": "text -> image/video", "query": text, "hits": hits,
                        "top1_matches": bool(hits) and _shows(hits[0], colour, shape)})
    for modality in ("image", "video"):  # a photo finds other photos, and the moment in a video that shows it
        images = col.items("modality = 'image'", ["id", "paths"]).to_pylist()
        image = min(images, key=lambda r: (VIDEOS[0][0] != tuple(Path(r["paths"][0]).name.split("-")[:2]),
                                           r["paths"][0]))  # a photo of a concept that a sample video shows
        name = Path(image["paths"][0]).name
        colour, shape = name.split("-")[:2]
        hits = [h.to_dict() for h in col.search(like=image["id"], k=k, modalities=[modality])]
        queries.append({"kind": f"image -> {modality}", "query": name, "hits": hits,
                        "top1_matches": bool(hits) and _shows(hits[0], colour, shape)})
    return queries


def _shows(hit: dict, colour: str, shape: str) -> bool:
    """Does the hit show the concept? Images by file name; video segments by which half of the video matched."""
    name = Path(hit["paths"][0]).stem
    if hit["modality"] != "video":
        return name.startswith(f"{colour}-{shape}")
    first, _, second = name.partition("-then-")
    # Sample videos: 1 s black, 4 s of the first concept, 4 s of the second.
    concept = first if hit.get("start", 0) < 5 - 1e-6 else second
    return concept == f"{colour}-{shape}"


def _span(hit: dict) -> str:
    return f"{hit['start']:.0f}-{hit['end']:.0f} s" if hit.get("start") is not None else ""
