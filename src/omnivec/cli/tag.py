"""`omnivec tag`: zero-shot tags (top labels with scores) as item metadata."""
from __future__ import annotations

from pathlib import Path

import typer

from .output import emit_json, out, table

SHOWN = 30   # items listed in the table output; --json lists all


def register(app: typer.Typer) -> None:
    @app.command("tag")
    def tag_cmd(
        labels: Path = typer.Option(..., "--labels", "-l", help="Labels: a text file (`name` or `name: description "
                                    "| description` per line) or YAML/JSON."),
        collection: str = typer.Option("default", "--collection", "-c", help="Collection name or folder."),
        top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="Labels kept per item."),
        min_score: float = typer.Option(None, "--min-score", help="Keep only labels scoring at least this "
                                        "(cosine similarity)."),
        new_only: bool = typer.Option(False, "--new-only", help="Only items not yet tagged with this label set."),
        where: str = typer.Option(None, "--where", help="SQL filter on item fields, e.g. \"modality = 'image'\"."),
        field: str = typer.Option("tags", "--field", help="Metadata field for the tags (also FIELD_scores, "
                                  "FIELD_version)."),
        template: list[str] = typer.Option(None, "--template", "-t", help="Prompt template such as 'a photo of a "
                                           "{}.' (repeatable; default: CLIP's templates per modality)."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Tag items with their best-matching labels, zero-shot, and store the tags with their scores."""
        from ..ops.tag import read_labels, tag_collection
        from ..store import open_collection

        label_set = read_labels(labels, templates=template or None)
        col = open_collection(collection)
        s = tag_collection(col, label_set, top_k=top_k, min_score=min_score, new_only=new_only, where=where,
                           field=field, progress=not json_out)
        if json_out:
            emit_json(s.to_dict())
            return
        out.print(f"[bold]{col.name}[/bold]: tagged {s.tagged} items with {s.labels} labels (version {s.version})"
                  f"; {s.unchanged} already tagged, {s.untagged} with no label above the minimum score, "
                  f"in {s.seconds:.1f} s")
        if s.top_counts:
            table("best label", ["label", "items"], [[k, v] for k, v in s.top_counts.items()])
        if s.items:
            rows = [[(i["paths"] or [i["id"]])[0], ", ".join(f"{t['label']} {t['score']:.3f}" for t in i["tags"])]
                    for i in s.items[:SHOWN]]
            more = f" (first {SHOWN}; --json lists all)" if len(s.items) > SHOWN else ""
            table(f"tags{more}", ["item", "tags"], rows)
