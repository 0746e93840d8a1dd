"""`omnivec retrieve`: context for a prompt (text chunks, images, audio/video time ranges) with citations."""
from __future__ import annotations

import sys

import typer

from .collections import COLLECTION
from .output import emit_json


def register(app: typer.Typer) -> None:
    @app.command("retrieve")
    def retrieve_cmd(
        question: str = typer.Argument(..., help="The question (or a file path) to find context for."),
        collection: str = COLLECTION,
        k: int = typer.Option(8, "-k", min=1, help="How many passages."),
        modality: str = typer.Option(None, "--modality", "-m", help="Only these modalities, e.g. text,image."),
        where: str = typer.Option(None, "--where", help="SQL filter on item fields, e.g. \"mime = 'application/pdf'\"."),
        min_score: float = typer.Option(None, "--min-score"),
        per_document: int = typer.Option(3, "--per-document", min=1, help="At most this many chunks of one document."),
        data_uri: bool = typer.Option(False, "--data-uri", help="Attach image hits as JPEG thumbnail data URIs."),
        thumbnail_size: int = typer.Option(256, "--thumbnail-size", min=16, help="Thumbnail's longest side, pixels."),
        max_data_uri: int = typer.Option(65536, "--max-data-uri", min=1024, help="Longest data URI, characters."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Retrieve passages for a prompt: text chunks, images and audio/video time ranges, with citations.
        Without --json, prints the numbered context block to paste into a prompt."""
        from ..ops.retrieve import retrieve
        from ..store import open_collection

        col = open_collection(collection)
        modalities = [m.strip() for m in modality.split(",") if m.strip()] if modality else None
        result = retrieve(col, question, k=k, modalities=modalities, where=where, min_score=min_score,
                          per_document=per_document, data_uri=data_uri, thumbnail_px=thumbnail_size,
                          max_data_uri_bytes=max_data_uri)
        if json_out:
            emit_json({"collection": col.name, **result.to_dict()})
        else:
            sys.stdout.write(result.context + "\n")  # plain text: rich would read "[1]" as markup
