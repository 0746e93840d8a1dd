"""`omnivec drift`: has a collection, or what people ask of it, moved? Two time windows of a collection, two
collections, or a query log over time."""
from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from .output import emit_json, out, table


def register(app: typer.Typer) -> None:
    @app.command("drift")
    def drift_cmd(
        collection: str = typer.Option(None, "--collection", "-c", help="Collection name or folder (default: "
                                       "'default'; with --log only when given)."),
        against: str = typer.Option(None, "--against", help="Compare with this collection (same space)."),
        where_a: str = typer.Option(None, "--where-a", help="SQL filter of the first window, e.g. \"year < 2022\"."),
        where_b: str = typer.Option(None, "--where-b", help="SQL filter of the second window."),
        by: str = typer.Option("added", "--by", help="Column that orders the collection in time (added, year, "
                               "taken_at or a metadata column)."),
        split: str = typer.Option(None, "--split", help="Value of --by where the second window starts (default: "
                                  "its median); a number or an ISO 8601 time."),
        windows: int = typer.Option(None, "--windows", min=2, help="Compare each of N equal-size time windows "
                                    "with the first (collections: by --by; logs: default 4)."),
        log: Path = typer.Option(None, "--log", help="Query log (JSONL: time, modality, latency_ms, best_score, "
                                 "results, vector or text)."),
        threshold: float = typer.Option(None, "--threshold", help="Best score under which a query had no good "
                                        "match (default: calibrated on the collection)."),
        permutations: int = typer.Option(500, "--permutations", min=19),
        max_items: int = typer.Option(5000, "--max-items", min=2),
        seed: int = typer.Option(0, "--seed"),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Two-sample tests (MMD with a permutation p-value, a classifier's AUC), what moved, and the no-match rate."""
        import numpy as np

        from ..quality import drift as dr
        from ..quality.diagnostics import json_ready, load_vectors
        from ..store import open_collection

        if log is not None:
            if against or where_a or where_b or split:
                raise ConfigError("--log compares windows of the log; it does not combine with --against, "
                                  "--where-a/--where-b or --split")
            col = open_collection(collection) if collection else None
            qlog = dr.read_query_log(log, space=(lambda: col.space) if col is not None else None)
            filled = dr.fill_best_scores(qlog, col) if col is not None else 0
            threshold_source = "given" if threshold is not None else None
            if threshold is None and col is not None and qlog.vectors is not None:
                threshold, threshold_source = dr.calibrated_threshold(qlog, col, seed=seed), "calibrated"
            result = {"mode": "query log", "collection": col.name if col else None, "best_scores_computed": filled,
                      "threshold_source": threshold_source,
                      **dr.log_drift(qlog, windows=windows or 4, threshold=threshold, permutations=permutations,
                                     seed=seed)}
        else:
            col = open_collection(collection or "default")
            if against:
                a, b = dr.two_collections(col, open_collection(against), max_items=max_items, seed=seed)
                result = {"mode": "collections", "a": col.name, "b": against,
                          **dr.compare(a, b, permutations=permutations, seed=seed)}
            elif windows and windows > 2 and not (where_a or where_b):
                vs = load_vectors(col, max_items=max_items, seed=seed, time_column=by)
                vs = vs.subset(~np.isnan(vs.times))
                result = {"mode": "windows over time", "collection": col.name, "by": by,
                          "windows": dr.drift_over_time(vs, windows, permutations=permutations, seed=seed)}
            else:
                a, b, how = dr.collection_windows(col, by=by, split=split, where_a=where_a, where_b=where_b,
                                                  max_items=max_items, seed=seed)
                result = {"mode": "two windows", "collection": col.name, **how,
                          **dr.compare(a, b, permutations=permutations, seed=seed)}
        result = json_ready(result)
        if json_out:
            emit_json(result)
        else:
            _print(result)


def _print(r: dict) -> None:
    if "mmd" in r:
        _print_comparison(r, r["mode"])
    if "windows" in r and r["windows"] and isinstance(r["windows"][0], dict):
        table(f"{r['mode']}: each window against the first", ["window", "start", "end", "size", "MMD²", "p",
                                                               "AUC", "no match"],
              [[w["window"], _when(w["start"]), _when(w["end"]), w.get("items", w.get("queries")),
                *[_cell(w.get(k)) for k in ("mmd2", "p_value", "classifier_auc", "no_match_rate")]]
               for w in r["windows"]])
    if r.get("no_match_rate") is not None:
        out.print(f"no good match: {r['no_match_rate']:.1%} of queries scored under {r['threshold']:.3f}")
    if isinstance(r.get("first_vs_last"), dict):
        _print_comparison(r["first_vs_last"], "first vs last window")
    if isinstance(r.get("vector_drift"), str):
        out.print(r["vector_drift"])


def _cell(v) -> str | float:
    """A table cell: a figure, or blank where none was computed (no threshold, too few vectors), never "None"."""
    return "" if v is None else v


def _when(t: float) -> str:
    """Epoch seconds as UTC time; other numbers (a year, a batch number) as they are."""
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t > 1e8 else f"{t:g}"


def _print_comparison(c: dict, title: str) -> None:
    m = c["mmd"]
    auc = c["classifier_auc"]
    out.print(f"[bold]{title}[/bold]: {c['sizes'][0]} vs {c['sizes'][1]} vectors; MMD² {m['mmd2']:.5f}, "
              f"p = {m['p_value']:.4f} ({m['permutations']} permutations); classifier AUC "
              f"{'n/a' if auc is None else f'{auc:.3f}'}")
    table("dimensions that moved most", ["dim", "effect size", "mean before", "mean after"],
          [[d["dim"], d["effect_size"], d["mean_before"], d["mean_after"]] for d in c["dimensions"][:5]])
    table("items most unlike the other side", ["side", "item", "modality", "path"],
          [[side, i["id"], i["modality"], i["path"]] for side in ("new", "gone") for i in c["items"][side][:5]])
