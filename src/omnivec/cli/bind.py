"""`omnivec bind SPACE_A SPACE_B --corpus captions.txt --out DIR`: one space holding both spaces' modalities."""
from __future__ import annotations

from pathlib import Path

import typer

from .output import emit_json, err, out, table


def register(app: typer.Typer) -> None:
    @app.command("bind")
    def bind_cmd(
        base: str = typer.Argument(..., help="Space A, whose vector space the result is (e.g. clip-vit-b-32)."),
        other: str = typer.Argument(..., help="Space B, whose extra modalities are mapped into A (e.g. clap-htsat)."),
        corpus: Path = typer.Option(..., "--corpus", help="Text file, one sentence per line, that both spaces embed "
                                    "(captions that name what the media show and sound like)."),
        out_dir: Path = typer.Option(..., "--out", "-o", help="Folder to write the bound space to."),
        name: str = typer.Option(None, "--name", help="Name of the bound space (default: the folder's name)."),
        mlp: bool = typer.Option(True, "--mlp/--no-mlp", help="Also try a small MLP map."),
        seed: int = typer.Option(0, "--seed", help="Seed of the sentence split and of the MLP."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        """Learn a map from B's text space into A's from text alone; save it as a space that `--space DIR` loads:
        text and A's modalities embed with A, B's other modalities with B and then through the map."""
        from ..spaces.bound import bind

        record = bind(base, other, corpus, out_dir, name=name, mlp=mlp, seed=seed)
        fit = record["fit"]
        summary = {"space": str(out_dir.expanduser().resolve()), "name": record["name"],
                   "base": record["spaces"]["base"]["name"], "other": record["spaces"]["other"]["name"],
                   "mapped_modalities": record["mapped_modalities"], "map": record["map"]["kind"],
                   "params": record["map"]["params"], "sentences": fit["sentences"], "split": fit["split"],
                   "heldout": fit["heldout"], "heldout_mean_vector_baseline": fit["heldout_mean_vector_baseline"],
                   "seconds": fit["seconds"]}
        if json_out:
            emit_json(summary)
            return
        held, base_line = fit["heldout"], fit["heldout_mean_vector_baseline"]
        out.print(f"[bold]{record['name']}[/bold]: {summary['other']} -> {summary['base']} through "
                  f"{fit['sentences']} sentences; {', '.join(record['mapped_modalities'])} mapped by the "
                  f"{record['map']['kind']} map {record['map']['params']}")
        table(f"held-out text ({fit['split']['heldout']} sentences)", ["measure", "map", "mean-vector baseline"],
              [[k, v, base_line.get(k, "")] for k, v in held.items()])
        err.print(f"saved to {summary['space']}; use it with --space {summary['space']}")
