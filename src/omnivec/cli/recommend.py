"""`omnivec recommend`: items like these (and a text), unlike those, of any modality, diverse, not yet seen."""
from __future__ import annotations

from pathlib import Path

import typer

from .collections import COLLECTION
from .output import emit_json, table


def _floats(value: str | None, option: str) -> list[float] | None:
    from ..errors import ConfigError

    if not value:
        return None
    try:
        return [float(x) for x in value.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {value!r}: give comma-separated numbers, e.g. 1,0.5") from None


def register(app: typer.Typer) -> None:
    @app.command("recommend")
    def recommend_cmd(
        collection: str = COLLECTION,
        like: list[str] = typer.Option(None, "--like", help="An item id or file to find more like (repeatable)."),
        unlike: list[str] = typer.Option(None, "--unlike", help="An item id or file to find less like (repeatable)."),
        text: list[str] = typer.Option(None, "--text", help="A text to combine with the examples, e.g. \"at night\"."),
        like_weights: str = typer.Option(None, "--like-weights", help="Weights of the --like examples, in order "
                                         "(default: 1 split among them)."),
        unlike_weights: str = typer.Option(None, "--unlike-weights", help="Weights of the --unlike examples "
                                           "(default: 0.5 split among them)."),
        text_weight: float = typer.Option(1.0, "--text-weight", help="Weight of the text (split among several)."),
        modality: str = typer.Option(None, "--modality", "-m", help="Recommend only these modalities, e.g. "
                                     "audio,video."),
        where: str = typer.Option(None, "--where", help="SQL filter on item fields, e.g. \"year >= 2020\"."),
        k: int = typer.Option(10, "-k", min=1),
        diversity: float = typer.Option(0.0, "--diversity", help="0 = by relevance only; up to 1 = prefer results "
                                        "unlike those already chosen (MMR, lambda = 1 - diversity)."),
        exclude_seen: Path = typer.Option(None, "--exclude-seen", help="File of item ids or paths "
                                                    "already seen (one per line); never recommended."),
        exclude: list[str] = typer.Option(None, "--exclude", help="An item id or path never to recommend."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Recommend items like the examples and text (any modality in, any modality out)."""
        from ..ops.recommend import read_seen, recommend
        from ..store import open_collection

        col = open_collection(collection)
        seen = list(exclude or [])
        if exclude_seen is not None:
            seen += read_seen(exclude_seen)
        recs = recommend(col, like=like or [], unlike=unlike or [], text=text or None,
                         like_weights=_floats(like_weights, "--like-weights"),
                         unlike_weights=_floats(unlike_weights, "--unlike-weights"), text_weight=text_weight,
                         modalities=modality, k=k, diversity=diversity, exclude=seen, where=where)
        if json_out:
            emit_json({"collection": col.name, **recs.to_dict()})
            return
        table(f"{len(recs.hits)} recommendations from {col.name}", ["rank", "score", "modality", "time", "id", "path"],
              [[i + 1, h.score, h.modality, f"{h.start:.1f}-{h.end:.1f} s" if h.start is not None else "", h.id,
                (h.paths or [""])[0]] for i, h in enumerate(recs.hits)])
