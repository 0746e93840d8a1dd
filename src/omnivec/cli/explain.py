"""`omnivec explain QUERY ITEM`: why an item ranked where it did for a query."""
from __future__ import annotations

from pathlib import Path

import typer

from ..store import open_collection
from .output import emit_json, out, table

COLLECTION = typer.Option("default", "--collection", "-c", help="Collection name (under $OMNIVEC_HOME) or folder.")


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        query: str = typer.Argument(..., help="The query text (or a file path) that was searched for."),
        item: str = typer.Argument(..., help="The item: its id, content hash or a stored path."),
        collection: str = COLLECTION,
        k: int = typer.Option(5, "-k", min=1, help="How many top hits to compare with."),
        labels: str = typer.Option(None, "--labels", help="Label prompts to compare with: comma-separated, or a "
                                   "text file with one label per line."),
        hub_k: int = typer.Option(10, "--hub-k", min=1, help="Neighbourhood size for hubness (k-occurrence)."),
        hub_sample: int = typer.Option(200, "--hub-sample", min=1, help="Stored items used as sample queries."),
        queries: Path = typer.Option(None, "--queries", help="Text file of sample queries (one per line) for "
                                     "hubness, instead of stored items."),
        modality: str = typer.Option(None, "--modality", "-m", help="Rank only these modalities, as the search did."),
        where: str = typer.Option(None, "--where", help="Rank only items passing this filter, as the search did."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Its score against the top hits and its rank, the segment that matched, its hubness, its nearest labels."""
        from ..quality.explain import explain

        col = open_collection(collection)
        r = explain(col, item, query, k=k, labels=_lines(labels), hub_k=hub_k, hub_sample=hub_sample,
                    hub_queries=_read_lines(queries) if queries else None,
                    modalities=modality.split(",") if modality else None, where=where)
        if json_out:
            emit_json({"collection": col.name, **r})
            return
        for line in r["summary"]:
            out.print(line)
        rows = [[h["rank"], h["score"], h["score"] - r["score"], h["modality"], h["id"], (h["paths"] or [""])[0]]
                for h in r["top_hits"]]
        if r["rank"] > k:
            rows.append([r["rank"], r["score"], 0.0, r["item"]["modality"], r["item"]["id"],
                         (r["item"]["paths"] or [""])[0]])
        table(f"top {k} of {r['of']} for {query!r} (and the item)", ["rank", "score", "above item", "modality", "id",
                                                                    "path"], rows)
        if r["segments"]:
            table("segments of the item", ["start s", "end s", "score", "matched"],
                  [[s["start"], s["end"], s["score"], "<-" if s == r["matched_segment"] else ""]
                   for s in r["segments"]])
        h = r["hubness"]
        out.print(f"hubness: among the {h['k']} nearest items of {h['k_occurrence']} of {h['queries']} sampled "
                  f"{h['sample']} (k-occurrence; mean {h['expected']:.2f}, percentile {h['percentile']:.0f}, "
                  f"skewness {'-' if h['skewness'] is None else format(h['skewness'], '.2f')})")
        if "labels" in r:
            table("nearest labels", ["item reads as", "score", "query reads as", "score"],
                  [[a["label"], a["score"], b["label"], b["score"]] for a, b in zip(r["labels"]["item"],
                                                                                   r["labels"]["query"])])


def _lines(labels: str | None) -> list[str] | None:
    if not labels:
        return None
    p = Path(labels)
    if p.is_file():
        return _read_lines(p)
    return [x.strip() for x in labels.split(",") if x.strip()]


def _read_lines(path: Path) -> list[str]:
    from ..errors import ConfigError

    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    if not lines:
        raise ConfigError(f"{path} has no lines")
    return lines
