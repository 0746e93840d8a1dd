"""`omnivec index | search | errors | reembed`: collections from the command line."""
from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from ..spaces import load_space
from ..store import open_collection
from .output import emit_json, err, out, table

COLLECTION = typer.Option("default", "--collection", "-c", help="Collection name (under $OMNIVEC_HOME), folder, or "
                          "milvus://host:port/name for a collection kept in Milvus.")


def register(app: typer.Typer) -> None:
    @app.command("index")
    def index_cmd(
        paths: list[str] = typer.Argument(..., help="Folders, files, manifests (.csv/.jsonl/.parquet) or URLs."),
        collection: str = COLLECTION,
        space: str = typer.Option(None, "--space", "-s", help="Space to pin a new collection to."),
        precision: str = typer.Option(None, "--precision", help="Model arithmetic of a new collection's space: "
                                      "fp32 (default), bf16, fp16 (GPU). Part of the space version."),
        sync: bool = typer.Option(False, "--sync", help="Forget files that were deleted or moved away."),
        include_hidden: bool = typer.Option(False, "--include-hidden", help="Also index hidden and system files."),
        ray: str = typer.Option(None, "--ray", help="Decode and embed on a Ray cluster: 'auto' (a running cluster, "
                                "else a local one) or the cluster's address."),
        ray_workers: int = typer.Option(None, "--ray-workers", min=1, help="Model actors on the Ray cluster "
                                        "(default: one per GPU, else half the CPUs)."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Index folders and manifests into a collection; re-runs skip unchanged files and resume after a crash."""
        from ..ingest import index

        # A path that is not there is a mistake in the command, not a failed item: say so before anything is
        # created (a typo must not leave an empty collection behind).
        missing = [p for p in paths if not p.startswith(("http://", "https://")) and not Path(p).expanduser().exists()]
        if missing:
            raise ConfigError(f"no such file or folder: {', '.join(missing)}; nothing was indexed")
        if precision:
            if not space:
                raise typer.BadParameter("--precision applies to the space of a new collection: give --space too")
            space = load_space(space, overrides={"precision": precision})
        col = open_collection(collection, space=space, create=True)
        if ray:
            from ..ingest.distributed import index_distributed

            summary = index_distributed(col, paths, ray_address=ray, workers=ray_workers, sync=sync,
                                        include_hidden=include_hidden, progress=not json_out,
                                        space_source=space)
        else:
            summary = index(col, paths, sync=sync, include_hidden=include_hidden, progress=not json_out)
        s = summary.to_dict()
        s["collection"] = {"name": col.name, "path": col.location, "items": len(col), "space": col.pinned}
        if json_out:
            emit_json(s)
        else:
            out.print(f"[bold]{col.name}[/bold]: {s['indexed']} indexed, {s['duplicates']} duplicates, "
                      f"{s['unchanged']} unchanged, {sum(s['skipped'].values())} skipped, "
                      f"{sum(s['failed'].values())} failed, {s['removed']} removed in {s['seconds']} s "
                      f"({s['items_per_second'] or 0} items/s); {s['collection']['items']} items in the collection")
            for reason, n in s["skipped"].items():
                out.print(f"  skipped {n}: {reason}")
            for stage, n in s["failed"].items():
                out.print(f"  [red]failed[/red] {n} at {stage} (see `omnivec errors -c {col.name}`)")
        if summary.failed:
            raise typer.Exit(1)

    @app.command("search")
    def search_cmd(
        query: str = typer.Argument(None, help="Text (or a file path) to search for."),
        collection: str = COLLECTION,
        image: list[Path] = typer.Option(None, "--image", help="Search by an image (repeatable)."),
        audio: list[Path] = typer.Option(None, "--audio", help="Search by a sound."),
        video: list[Path] = typer.Option(None, "--video", help="Search by a video."),
        like: list[str] = typer.Option(None, "--like", help="More like this stored item: an id, content hash or stored path."),
        weights: str = typer.Option(None, "--weights", help="Weights of the query parts, comma-separated, in the "
                                    "order: text, images, audio, videos, likes."),
        modality: str = typer.Option(None, "--modality", "-m", help="Only these modalities, e.g. image,video."),
        where: str = typer.Option(None, "--where", help="SQL filter on item fields, e.g. \"year >= 2020\"."),
        k: int = typer.Option(10, "-k", min=1),
        min_score: float = typer.Option(None, "--min-score"),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Search a collection by text, image, sound, video or a stored item, with filters."""
        col = open_collection(collection)
        w = [float(x) for x in weights.split(",")] if weights else None
        hits = col.search(query, image=[str(p) for p in image or []] or None,
                          audio=[str(p) for p in audio or []] or None, video=[str(p) for p in video or []] or None,
                          like=like or None, weights=w, k=k, where=where, min_score=min_score,
                          modalities=modality.split(",") if modality else None)
        if json_out:
            emit_json({"collection": col.name, "hits": [h.to_dict() for h in hits]})
            return
        table(f"{len(hits)} hits in {col.name}", ["rank", "score", "modality", "time", "id", "path"],
              [[i + 1, h.score, h.modality, f"{h.start:.1f}-{h.end:.1f} s" if h.start is not None else "",
                h.id, (h.paths or [""])[0]] for i, h in enumerate(hits)])

    @app.command("errors")
    def errors_cmd(collection: str = COLLECTION, json_out: bool = typer.Option(False, "--json")) -> None:
        """What failed to index, where, and why."""
        col = open_collection(collection)
        rows = col.errors()
        if json_out:
            emit_json({"collection": col.name, "errors": rows})
            return
        table(f"{len(rows)} failed items in {col.name}", ["path", "stage", "error"],
              [[r["path"], r["stage"], r["error"]] for r in rows])

    @app.command("reembed")
    def reembed_cmd(collection: str = COLLECTION, space: str = typer.Option(..., "--space", "-s"),
                    drop_unreadable: bool = typer.Option(False, "--drop-unreadable",
                                                         help="drop items whose files are gone instead of stopping"),
                    json_out: bool = typer.Option(False, "--json")) -> None:
        """Move a collection to another space: re-embed every item, keep its metadata, tags, moderation, errors and
        audit log, then swap atomically (a killed run leaves the old collection as it was; run it again)."""
        from ..ingest.reembed import reembed

        result = reembed(collection, space, progress=not json_out, drop_unreadable=drop_unreadable)
        if json_out:
            emit_json(result.to_dict())
        else:
            err.print(f"{result.collection}: re-embedded {result.carried_items} items from {result.source} into "
                      f"{result.target}" + (" (resumed)" if result.resumed else "")
                      + (f"; dropped {len(result.dropped)} unreadable items" if result.dropped else ""))
        if result.newly_failed or result.dropped:   # files that failed before and fail again are no news
            raise typer.Exit(1)
