"""`omnivec diagnose`: modality gap, hubness, effective dimensionality, outliers, duplicates, score distributions
and failures of a collection."""
from __future__ import annotations

from pathlib import Path

import typer

from .collections import COLLECTION
from .output import emit_json, out, table


def register(app: typer.Typer) -> None:
    @app.command("diagnose")
    def diagnose_cmd(
        collection: str = COLLECTION,
        k: int = typer.Option(10, "-k", min=1, help="Neighbours per item for hubness and outliers."),
        max_items: int = typer.Option(5000, "--max-items", min=3, help="Measure a seeded sample of larger "
                                      "collections."),
        duplicate_threshold: float = typer.Option(0.98, "--duplicate-threshold", min=-1.0, max=1.0,
                                                  help="Cosine at or above which two items are near-duplicates."),
        seed: int = typer.Option(0, "--seed"),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Measure a collection: is it healthy, and which thresholds suit it?"""
        from ..quality.diagnostics import diagnose
        from ..quality.report import summary_rows
        from ..store import open_collection

        col = open_collection(collection)
        d = diagnose(col, k=k, max_items=max_items, duplicate_threshold=duplicate_threshold, seed=seed)
        if json_out:
            emit_json(d)
            return
        table(f"{col.name}: diagnostics", ["measure", "value"], [list(r) for r in summary_rows(d)])
        hubs = d["hubness"]["overall"].get("hubs", [])[:5]
        if hubs:
            table(f"top hubs (in how many of {d['hubness']['overall']['items']} {k}-NN lists)",
                  ["item", "modality", "occurrence", "path"],
                  [[h["id"], h["modality"], h["occurrence"], h["path"]] for h in hubs])
        table("scores per modality pair: random pairs vs best match (choose thresholds above the random p99)",
              ["query → target", "random p50", "random p99", "best p10", "best p50"],
              [[f"{p['query']} → {p['target']}", p["random_pairs"]["quantiles"]["p50"],
                p["random_pairs"]["quantiles"]["p99"], p["best_match"]["quantiles"]["p10"],
                p["best_match"]["quantiles"]["p50"]] for p in d["scores"]["pairs"]])
        for o in d["outliers"]["items"][:5]:
            out.print(f"outlier {o['id']} ({o['modality']}) {Path(o['path']).name if o['path'] else ''}: "
                      f"mean {k}-NN similarity {o['knn_similarity']:.3f}")
