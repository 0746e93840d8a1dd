"""`omnivec dupes`: near-duplicate groups of a collection, across modalities, with matching video segments."""
from __future__ import annotations

from pathlib import Path

import typer

from .collections import COLLECTION
from .output import emit_json, out, table


def register(app: typer.Typer) -> None:
    @app.command("dupes")
    def dupes_cmd(
        collection: str = COLLECTION,
        threshold: float = typer.Option(0.95, "--threshold", "-t", help="Cosine similarity at or above which two "
                                        "items (or segments) are near-duplicates."),
        k: int = typer.Option(10, "-k", help="Neighbours asked of the ANN index per vector (more are asked for "
                              "when all k qualify)."),
        where: str = typer.Option(None, "--where", help="SQL filter on item fields, e.g. \"year >= 2020\"."),
        modality: str = typer.Option(None, "--modality", "-m", help="Only these modalities, e.g. image,video."),
        identical: bool = typer.Option(True, "--identical/--no-identical", help="Also list files with identical "
                                       "bytes (one item, several paths)."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Find groups of near-duplicate items (re-encoded, resized copies; a photo shown in a video)."""
        from ..ops.dupes import find_dupes
        from ..store import open_collection

        col = open_collection(collection)
        result = find_dupes(col, threshold, k=k, where=where, modalities=modality, identical=identical)
        if json_out:
            emit_json({"collection": col.name, **result.to_dict()})
            return
        out.print(f"{len(result.groups)} groups among {result.items} items ({result.rows} vectors) at threshold "
                  f"{threshold} in {result.seconds:.2f} s")
        for n, g in enumerate(result.groups, 1):
            rows = [[m["id"], m["modality"], m["best_score"], _best_time(g, m["id"]),
                     "; ".join(Path(p).name for p in m["paths"])] for m in g.members]
            table(f"group {n}: {len(g.members)} items, best {g.best_score:.4f}",
                  ["id", "modality", "best score", "time", "paths"], rows)


def _best_time(group, item: str) -> str:
    """The best-scoring matched time range of an audio or video member ("" for whole items)."""
    spans = [((m.a_start, m.a_end) if p.a == item else (m.b_start, m.b_end), m.score)
             for p in group.pairs if item in (p.a, p.b) for m in p.matches]
    spans = [(span, score) for span, score in spans if span[0] is not None]
    if not spans:
        return ""
    (start, end), _ = max(spans, key=lambda x: x[1])
    return f"{start:.1f}-{end:.1f} s"
