"""`omnivec eval retrieval | zeroshot`: measure one or more spaces on the user's own labelled data."""
from __future__ import annotations

import math
from pathlib import Path

import typer

from .output import emit_json, err, out, table

SPACES = typer.Option(None, "--space", "-s", help="Space to evaluate; repeat it to compare spaces side by side "
                      "(default: clip-vit-b-32).")
DEFAULT_SPACE = "clip-vit-b-32"
MAX_MATRIX_CLASSES = 20  # larger confusion matrices are left to --json


def register(app: typer.Typer) -> None:
    eval_app = typer.Typer(help="Measure spaces on your own labelled data: retrieval and zero-shot classification.",
                           no_args_is_help=True)
    app.add_typer(eval_app, name="eval")

    @eval_app.command("retrieval")
    def retrieval_cmd(
        dataset: Path = typer.Argument(..., help="A caption folder (file + same-name .txt), webdataset .tar "
                                       "shard(s), or a .csv/.jsonl judgements file."),
        space: list[str] = SPACES,
        items: list[Path] = typer.Option(None, "--items", help="Extra candidate files or folders (distractors)."),
        k: str = typer.Option("1,5,10", "--k", help="Cut-offs for recall@k, mAP@k and nDCG@k, comma-separated."),
        rank_by: str = typer.Option("recall@1", "--rank-by", help="Metric that decides the best space."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """recall@k, mAP@k, nDCG@k and MRR in both directions (e.g. text->image and image->text), and ms per item."""
        from ..quality.datasets import load_retrieval
        from ..quality.evaluate import compare_retrieval

        ks = _ks(k)
        data = load_retrieval(dataset, extra_items=items or ())
        report = compare_retrieval(_spaces(space), data, ks, metric=rank_by)
        failed = _failures(report["results"])
        if json_out:
            emit_json(finite(report))
        else:
            _print_retrieval(report, ks)
        if failed:
            raise typer.Exit(1)

    @eval_app.command("zeroshot")
    def zeroshot_cmd(
        dataset: Path = typer.Argument(..., help="A folder of class subfolders of images or audio."),
        space: list[str] = SPACES,
        labels: Path = typer.Option(None, "--labels", help="JSON file: class folder -> label or list of "
                                    "descriptions (default: the folder names)."),
        template: list[str] = typer.Option(None, "--template", help="Prompt template with {} for the label "
                                           "(repeatable; default: omnivec's image or audio templates)."),
        rank_by: str = typer.Option("top1", "--rank-by", help="Metric that decides the best space."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Top-1 and top-5 accuracy, per-class accuracy and the confusion matrix of zero-shot classification."""
        from ..quality.datasets import load_zeroshot
        from ..quality.evaluate import compare_zeroshot

        data = load_zeroshot(dataset, labels)
        report = compare_zeroshot(_spaces(space), data, template or None, metric=rank_by)
        failed = _failures(report["results"])
        if json_out:
            emit_json(finite(report))
        else:
            _print_zeroshot(report)
        if failed:
            raise typer.Exit(1)


def _spaces(names: list[str] | None):
    """Loaded one by one as they are listed. A model folder is labelled by its folder name unless two given
    folders share it; then by the path as typed."""
    from ..spaces import load_space

    names = names or [DEFAULT_SPACE]
    short = [Path(n).name if Path(n).is_dir() else n for n in names]
    for name, label in zip(names, short):
        yield (label if short.count(label) == 1 else name), load_space(name)


def _ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise typer.BadParameter(f"--k takes whole numbers separated by commas, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise typer.BadParameter("--k values must be >= 1")
    return ks


def _failures(results: list[dict]) -> int:
    n = 0
    for r in results:
        for f in r["failed"]:
            err.print(f"[red]failed[/red] ({r['space']}) {f.get('item')}: {f.get('stage', 'embed')}: {f.get('error')}")
            n += 1
    return n


def finite(obj):
    """NaN (e.g. top-5 with fewer than 5 classes) becomes null: JSON has no NaN."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite(v) for v in obj]
    return obj


def _print_retrieval(report: dict, ks: list[int]) -> None:
    d = report["dataset"]
    out.print(f"[bold]{d['source']}[/bold] ({d['kind']}): {d['queries']} queries, {d['items']} items")
    kmax = ks[-1]
    cols = ["space", "queries"] + [f"R@{k}" for k in ks] + [f"mAP@{kmax}", f"nDCG@{kmax}", "MRR", "ms/item",
                                                            "ms/text"]
    for direction, best in report["best"].items():
        rows = []
        for r in report["results"]:
            m = r["directions"].get(direction)
            if m:
                rows.append([r["space"], m["queries"]] + [m[f"recall@{k}"] for k in ks] +
                            [m[f"mAP@{kmax}"], m[f"nDCG@{kmax}"], m["MRR"], r["ms_per_item"] or "",
                             r["ms_per_text"] or ""])
        table(direction, cols, rows)
        if len(report["results"]) > 1 and best:
            out.print(f"best for {direction} by {report['ranked_by']}: [bold]{best}[/bold]")
        elif report.get("tied", {}).get(direction):
            out.print(f"no single best for {direction}: {', '.join(report['tied'][direction])} tie on "
                      f"{report['ranked_by']}")


def _print_zeroshot(report: dict) -> None:
    d = report["dataset"]
    out.print(f"[bold]{d['source']}[/bold]: {d['items']} items in {d['classes']} classes")
    table("zero-shot classification", ["space", "top-1", "top-5", "mean per-class recall", "ms/item"],
          [[r["space"], r["top1"], r["top5"], r["mean_per_class_recall"], r["ms_per_item"] or ""]
           for r in report["results"]])
    classes = report["results"][0]["classes"]
    table("per-class accuracy", ["class"] + [r["space"] for r in report["results"]],
          [[c] + [r["per_class_accuracy"][c] for r in report["results"]] for c in classes])
    for r in report["results"]:
        if len(classes) > MAX_MATRIX_CLASSES:
            out.print(f"confusion matrix of {r['space']}: {len(classes)} classes, see --json")
            continue
        table(f"confusion matrix of {r['space']} (rows: true class, columns: predicted)",
              ["true \\ predicted"] + classes, [[c] + row for c, row in zip(classes, r["confusion_matrix"])])
    if len(report["results"]) > 1 and report["best"]:
        out.print(f"best by {report['ranked_by']}: [bold]{report['best']}[/bold]")
    elif report.get("tied"):
        out.print(f"no single best: {', '.join(report['tied'])} tie on {report['ranked_by']}")
