"""`omnivec cluster`: k-means or HDBSCAN over a collection, clusters named by labels or central items, 2-D maps."""
from __future__ import annotations

from pathlib import Path

import typer

from .collections import COLLECTION
from .output import emit_json, err, table


def register(app: typer.Typer) -> None:
    @app.command("cluster")
    def cluster_cmd(
        collection: str = COLLECTION,
        method: str = typer.Option("kmeans", "--method", help="kmeans (k clusters) or hdbscan (dense groups + noise)."),
        k: int = typer.Option(8, "--k", "-k", help="Number of clusters for k-means."),
        min_cluster_size: int = typer.Option(5, "--min-cluster-size", help="Smallest HDBSCAN cluster."),
        min_samples: int = typer.Option(None, "--min-samples", help="HDBSCAN's density neighbourhood (default: "
                                        "--min-cluster-size); 1-2 leave fewer items as noise."),
        where: str = typer.Option(None, "--where", help="SQL filter on item fields, e.g. \"year >= 2020\"."),
        modality: str = typer.Option(None, "--modality", "-m", help="Only these modalities, e.g. image,video."),
        labels: Path = typer.Option(None, "--labels", help="Label file (one per line; `name: desc | desc`) to name "
                                    "clusters by their nearest label prompt."),
        map_paths: list[Path] = typer.Option(None, "--map", help="Write a 2-D map: out.png or out.html "
                                             "(repeatable)."),
        projection: str = typer.Option("pca", "--projection", help="2-D projection of the map: pca or umap."),
        seed: int = typer.Option(0, "--seed"),
        members: bool = typer.Option(True, "--members/--no-members", help="List every member id in the JSON."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Group a collection's items into clusters, name them, and optionally draw a map."""
        from ..ops.cluster import cluster
        from ..ops.maps import FORMATS, PROJECTIONS
        from ..errors import ConfigError
        from ..store import open_collection

        for p in map_paths or []:   # usage errors before any work
            if p.suffix.lower() not in FORMATS:
                raise ConfigError(f"--map {p}: use a .png or .html name")
        if projection not in PROJECTIONS:
            raise ConfigError(f"--projection {projection!r}: use one of {', '.join(PROJECTIONS)}")
        col = open_collection(collection)
        result = cluster(col, method, k, where=where, modalities=modality, labels=labels,
                         min_cluster_size=min_cluster_size, min_samples=min_samples, seed=seed)
        for p in map_paths or []:
            result.save_map(p, projection, seed)
        if json_out:
            emit_json({"collection": col.name, **result.to_dict(members)})
            return
        table(f"{len(result.clusters)} clusters of {len(result.items)} items in {col.name} ({method})",
              ["cluster", "name", "size", "label score", "most central"],
              [[c.id, c.name, c.size, c.labels[0]["score"] if c.labels else "",
                ", ".join(Path(x["path"]).name for x in c.central)] for c in result.clusters])
        for m in result.maps:
            err.print(f"map ({result.projection}): {m}")
