"""`omnivec report`: one self-contained HTML file with plots, plus the JSON of every number in it."""
from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import ConfigError
from .collections import COLLECTION
from .output import emit_json, err


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report_cmd(
        collection: str = COLLECTION,
        out: Path = typer.Option(..., "--out", "-o", help="HTML file to write."),
        json_path: Path = typer.Option(None, "--json-out", help="JSON file to write (default: --out with .json)."),
        eval_result: Path = typer.Option(None, "--eval", help="An evaluation result (JSON, e.g. from `omnivec eval "
                                         "retrieval --json`) for recall@k curves."),
        log: Path = typer.Option(None, "--log", help="Query log (JSONL) for drift over time and no-match rates."),
        drift_by: str = typer.Option(None, "--drift-by", help="Or: drift of the collection over this column "
                                     "(added, year, taken_at, a metadata column)."),
        windows: int = typer.Option(4, "--windows", min=2),
        threshold: float = typer.Option(None, "--threshold", help="No-match threshold (default: calibrated)."),
        colour_by: str = typer.Option("auto", "--colour-by", help="Colour the 2-D map by modality, cluster or auto."),
        k: int = typer.Option(10, "-k", min=1),
        max_items: int = typer.Option(5000, "--max-items", min=3),
        seed: int = typer.Option(0, "--seed"),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Write a report on a collection: score distributions, map, hubness, recall@k and drift, each explained."""
        from ..quality.report import build_report, write_report
        from ..store import open_collection

        result = None
        if eval_result is not None:
            try:
                result = json.loads(Path(eval_result).read_text())
            except (OSError, ValueError) as e:
                raise ConfigError(f"evaluation result {eval_result}: {e}") from None
        col = open_collection(collection)
        data = build_report(col, eval_result=result, log=log, drift_by=drift_by, windows=windows,
                            threshold=threshold, k=k, max_items=max_items, colour_by=colour_by, seed=seed)
        html_path, json_file = write_report(data, out, json_path)
        summary = {"collection": col.name, "html": str(html_path), "json": str(json_file),
                   "figures": data["figures"], "figures_skipped": data["figures_skipped"]}
        if json_out:
            emit_json(summary)
        else:
            err.print(f"wrote {html_path} ({len(data['figures'])} figures) and {json_file}")
