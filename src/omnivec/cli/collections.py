"""`omnivec index | search | errors | reembed`: collections from the command line."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import typer

from ..errors import ConfigError
from ..spaces import load_space
from ..store import open_collection
from ..store.collection import collection_path
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
        like: list[str] = typer.Option(None, "--like", help="More like this stored item id."),
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
                    json_out: bool = typer.Option(False, "--json")) -> None:
        """Move a collection to another space: re-embed every stored path, then swap atomically."""
        from ..ingest import index

        old = open_collection(collection)
        if old.location.startswith("milvus://"):
            raise ConfigError(f"reembed swaps collection folders; for {old.location} index the paths into a new "
                              f"Milvus collection with --space {space}, then switch to it")
        paths = sorted({p for row in old.items(None, ["paths"]).column("paths").to_pylist() for p in row or []})
        folder = old.folder
        tmp = folder.with_name(f".{folder.name}.reembed")
        shutil.rmtree(tmp, ignore_errors=True)  # a previous interrupted attempt
        new = open_collection(tmp, space=space, create=True)
        new.info["name"] = old.name
        summary = index(new, paths, progress=not json_out)
        (tmp / "collection.json").write_text(__import__("json").dumps({**new.info, "name": old.name}, indent=2))
        retired = folder.with_name(f".{folder.name}.old-{int(time.time())}")
        folder.rename(retired)
        tmp.rename(folder)
        shutil.rmtree(retired, ignore_errors=True)
        result = {"collection": old.name, "from": old.pinned["name"], "to": new.pinned["name"], **summary.to_dict()}
        if json_out:
            emit_json(result)
        else:
            err.print(f"{old.name}: re-embedded {summary.indexed} items from {old.pinned['name']} into "
                      f"{new.pinned['name']}")
        if summary.failed:
            raise typer.Exit(1)
