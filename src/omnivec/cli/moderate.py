"""`omnivec moderate` and `omnivec policy calibrate | show | audit`: moderation against written policies."""
from __future__ import annotations

from pathlib import Path

import typer

from .output import emit_json, err, out, table

SHOWN = 30   # flagged items listed in the table output; --json lists all
COLLECTION = typer.Option("default", "--collection", "-c", help="Collection name or folder.")
POLICIES = typer.Option(..., "--policies", "-p", help="Policy file (YAML).")


def register(app: typer.Typer) -> None:
    policy = typer.Typer(help="Moderation policies: calibrate thresholds, show versions, read the audit log.",
                         no_args_is_help=True)
    app.add_typer(policy, name="policy")

    @app.command("moderate")
    def moderate_cmd(
        policies: Path = POLICIES,
        collection: str = COLLECTION,
        where: str = typer.Option(None, "--where", help="SQL filter on item fields."),
        new_only: bool = typer.Option(False, "--new-only", help="Only items no current policy version has decided."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Score and report, but store and log nothing."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Flag items that match written policies; decisions go on the items and into an append-only audit log."""
        from ..ops.moderate import moderate_collection
        from ..ops.policies import load_policies
        from ..store import open_collection

        ps = load_policies(policies)
        col = open_collection(collection)
        s = moderate_collection(col, ps, where=where, new_only=new_only, dry_run=dry_run, progress=not json_out)
        if json_out:
            emit_json(s.to_dict())
            return
        for w in s.warnings:
            err.print(f"[yellow]warning:[/yellow] {w}")
        out.print(f"[bold]{col.name}[/bold]: {s.evaluated} items moderated, {s.unchanged} unchanged, "
                  f"{len(s.flagged)} flags" + (" (dry run: nothing stored)" if dry_run else f"; audit log "
                                              f"{s.audit_log}"))
        table("policies", ["policy", "version", "threshold", "action", "evaluated", "flagged", "cleared"],
              [[p["name"], p["version"], p["threshold"], p["action"], p["evaluated"], p["flagged"], p["cleared"]]
               for p in s.policies])
        if s.flagged:
            more = f" (first {SHOWN}; --json lists all)" if len(s.flagged) > SHOWN else ""
            table(f"flagged{more}", ["policy", "action", "score", "item"],
                  [[f["policy"], f["action"], f["score"], (f["paths"] or [f["item"]])[0]] for f in s.flagged[:SHOWN]])

    @policy.command("calibrate")
    def calibrate_cmd(
        policies: Path = POLICIES,
        labels: Path = typer.Option(..., "--labels", "-l", help="Labelled items: CSV or JSONL with an item (path "
                                    "or id) and a verdict per policy."),
        collection: str = typer.Option(None, "--collection", "-c", help="Collection the items are in (its space "
                                       "scores them)."),
        space: str = typer.Option(None, "--space", "-s", help="Space to embed item files with, when no collection "
                                  "is given."),
        target_precision: float = typer.Option(None, "--target-precision", min=0.0, max=1.0),
        target_recall: float = typer.Option(None, "--target-recall", min=0.0, max=1.0),
        only: list[str] = typer.Option(None, "--policy", help="Calibrate only this policy (repeatable)."),
        output: Path = typer.Option(None, "--output", "-o", help="Write the calibrated policies here (default: "
                                    "update the policy file in place)."),
        skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Leave out labelled items that are not "
                                          "found (exit code 1) instead of stopping."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Report, but write no file."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Set each policy's threshold from labelled items for a target precision or recall."""
        from ..ops.moderate import calibrate_policies
        from ..ops.policies import load_policies
        from ..spaces import load_space
        from ..store import open_collection

        if (target_precision is None) == (target_recall is None):
            raise typer.BadParameter("give one of --target-precision or --target-recall")
        if collection is None and space is None:
            raise typer.BadParameter("give --collection (items by id or stored path) or --space")
        ps = load_policies(policies)
        col = open_collection(collection) if collection else None
        sp = load_space(space) if space else None
        report = calibrate_policies(ps, labels, collection=col, space=sp, target_precision=target_precision,
                                    target_recall=target_recall, only=only or None, output=output,
                                    skip_unknown=skip_unknown, dry_run=dry_run)
        if json_out:
            emit_json(report.to_dict())
        else:
            table("calibration", ["policy", "met", "threshold", "precision", "recall", "positives", "negatives",
                                  "version"],
                  [[c.policy, "yes" if c.met else "NO" if c.positives or c.negatives else "no examples", c.threshold,
                    c.precision, c.recall, c.positives, c.negatives, f"{c.old_version} -> {c.new_version}"
                    if c.new_version != c.old_version else c.old_version] for c in report.policies])
            for c in report.policies:
                if c.reason:
                    (out if c.met else err).print(f"{c.policy}: {c.reason}")
            for s in report.skipped:
                err.print(f"skipped {s['where']}: {s['item']!r}: {s['reason']}")
            out.print(f"wrote {report.output}" if report.output else "no policy file written")
        if not report.ok:
            raise typer.Exit(1)

    @policy.command("show")
    def show_cmd(policies: Path = POLICIES, json_out: bool = typer.Option(False, "--json")) -> None:
        """Policies with their versions, thresholds and actions."""
        from ..ops.policies import load_policies

        ps = load_policies(policies)
        rows = [{"name": p.name, "version": p.version, **p.to_dict()} for p in ps]
        if json_out:
            emit_json({"policies": rows})
            return
        table(str(policies), ["policy", "version", "threshold", "action", "positives", "negatives"],
              [[p.name, p.version, p.threshold if p.threshold is not None else "(not set)", p.action,
                len(p.positives), len(p.negatives)] for p in ps])

    @policy.command("audit")
    def audit_cmd(
        collection: str = COLLECTION,
        policy_name: str = typer.Option(None, "--policy", help="Only this policy."),
        item: str = typer.Option(None, "--item", help="Only this item id."),
        event: str = typer.Option(None, "--event", help="Only this kind: run-start, flag, clear, run-end."),
        json_out: bool = typer.Option(False, "--json"),
    ) -> None:
        """Read a collection's moderation audit log."""
        from ..ops.moderate import audit_log, read_audit
        from ..store import open_collection

        col = open_collection(collection)
        entries = read_audit(col, policy=policy_name, item=item, event=event)
        if json_out:
            emit_json({"collection": col.name, "audit_log": str(audit_log(col).path), "entries": entries})
            return
        table(f"{len(entries)} audit entries in {col.name}", ["time", "event", "policy", "version", "score", "item"],
              [[e["time"], e["event"], e.get("policy", ", ".join(p["name"] for p in e.get("policies", []))),
                e.get("version", ""), e.get("score", ""), (e.get("paths") or [e.get("item", "")])[0]]
               for e in entries])
