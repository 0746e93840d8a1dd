"""`omnivec spaces`: the built-in spaces with their modalities, dimensions and licences."""
from __future__ import annotations

import typer

from ..spaces import list_spaces
from .output import emit_json, table


def register(app: typer.Typer) -> None:
    @app.command("spaces")
    def spaces_cmd(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List the built-in spaces. Any hub id or local model folder works too."""
        rows = [{"name": c.name, "backend": c.backend, "model": c.hub_id or c.open_clip_model,
                 "modalities": list(c.modalities), "dim": c.dim, "licence": c.licence,
                 "description": c.description} for c in list_spaces()]
        if json_out:
            emit_json(rows)
            return
        table("omnivec spaces", ["name", "modalities", "dim", "licence", "model"],
              [[r["name"], ", ".join(r["modalities"]), r["dim"], r["licence"], r["model"]] for r in rows])
