"""`omnivec embed FILES...`: vectors for files (any supported modality) and texts, to parquet or JSON."""
from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import MediaError, ModalityError
from ..spaces import Embedding, load_space
from .output import emit_json, err, table

DEFAULT_SPACE = "clip-vit-b-32"


def register(app: typer.Typer) -> None:
    @app.command("embed")
    def embed_cmd(
        files: list[Path] = typer.Argument(None, help="Files or folders (walked recursively) to embed."),
        text: list[str] = typer.Option(None, "--text", "-t", help="A text to embed (repeatable)."),
        space: str = typer.Option(DEFAULT_SPACE, "--space", "-s", help="Space name, hub id or local model folder."),
        model_path: Path = typer.Option(None, "--model-path", help="Local copy of the space's weights.",
                                        envvar="OMNIVEC_MODEL_PATH"),
        audio_space: str = typer.Option(None, "--audio-space", help="Space for the sound track of videos."),
        out: Path = typer.Option(None, "--out", "-o", help="Write vectors to this parquet file."),
        segments: bool = typer.Option(True, "--segments/--no-segments", help="Also write audio/video segments."),
        batch_size: int = typer.Option(32, "--batch-size", min=1),
        precision: str = typer.Option("fp32", "--precision", help="Model arithmetic: fp32, bf16, fp16 (GPU)."),
        json_out: bool = typer.Option(False, "--json", help="Print JSON (with vectors when no --out is given)."),
    ) -> None:
        """Embed files and texts. Modality is detected from each file's content."""
        # Positional arguments stay Paths, so a missing file is an error rather than a text to embed.
        items: list = list(_expand(files or [])) + list(text or [])
        if not items:
            raise typer.BadParameter("give FILES and/or --text")
        sp = load_space(space, model_path=model_path, audio_space=audio_space, batch_size=batch_size,
                        overrides={"precision": precision})
        n_files = len(items) - len(text or [])
        results = []
        file_results = sp.embed_items(items[:n_files], on_error="return", progress=not json_out) if n_files else []
        text_results = sp.embed_items(items[n_files:], modality="text", on_error="return") if text else []
        results = file_results + text_results
        ok = [r for r in results if isinstance(r, Embedding)]
        failed = [r for r in results if isinstance(r, MediaError)]
        if out:
            write_parquet(ok, out, segments)
        summary = {"space": sp.describe(), "embedded": len(ok), "failed": [f.to_dict() for f in failed],
                   "out": str(out) if out else None}
        if json_out:
            if not out:
                summary["items"] = [_record(r) for r in ok]
            emit_json(summary)
        else:
            if not out:
                table(f"{len(ok)} vectors in {sp.name} ({sp.dim}-d)", ["item", "modality", "segments", "vector"],
                      [[r.item, r.modality, len(r.segments), _preview(r)] for r in ok])
            else:
                err.print(f"wrote {len(ok)} vectors ({sp.name}, {sp.dim}-d, version {sp.version}) to {out}")
            for f in failed:
                err.print(f"[red]failed[/red] {f.item}: {f.stage}: {f.cause}")
        if failed:  # 4 when every failure is content the space does not cover (README: exit codes)
            raise typer.Exit(4 if all(isinstance(f, ModalityError) for f in failed) else 1)


def _expand(paths: list[Path]) -> list[Path]:
    out = []
    for p in paths:
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(Path(root) / f for f in sorted(files) if not f.startswith("."))
        else:
            out.append(p)
    return out


def _preview(r: Embedding) -> str:
    return "[" + ", ".join(f"{x:+.3f}" for x in r.vector[:4]) + ", ...]"


def _record(r: Embedding) -> dict:
    rec = {"item": r.item, "modality": r.modality, "space": r.space, "model": r.model, "version": r.version,
           "vector": r.vector, "info": r.info,
           "segments": [{"start": s.start, "end": s.end, "vector": s.vector} for s in r.segments]}
    if r.audio is not None:
        rec["audio"] = _record(r.audio)
    return rec


def write_parquet(results: list[Embedding], path: Path, segments: bool = True) -> None:
    """One row per item (kind "item"), plus one per audio window or video segment (kind "segment");
    a video's sound track adds rows from the audio space (its own space/model/version columns)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list] = {k: [] for k in ("item", "modality", "kind", "start", "end", "space", "model",
                                             "version", "vector")}

    def add(r: Embedding, kind: str, vec: np.ndarray, start=None, end=None, modality=None):
        for k, v in (("item", r.item), ("modality", modality or r.modality), ("kind", kind), ("start", start),
                     ("end", end), ("space", r.space), ("model", r.model), ("version", r.version),
                     ("vector", vec.astype(np.float32))):
            rows[k].append(v)

    for r in results:
        for e in ([r] + ([r.audio] if r.audio is not None else [])):
            add(e, "item", e.vector)
            if segments:
                for s in e.segments:
                    add(e, "segment", s.vector, s.start, s.end)
    vectors = rows.pop("vector")
    dims = {len(v) for v in vectors}
    # Fixed-size lists when every vector has one dimension (a video's sound track may live in another space).
    vtype = pa.list_(pa.float32(), next(iter(dims))) if len(dims) == 1 else pa.list_(pa.float32())
    table = pa.table({**{k: pa.array(v, type=pa.float64() if k in ("start", "end") else None)
                         for k, v in rows.items()},
                      "vector": pa.array([v.tolist() for v in vectors], type=vtype)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)  # a reader never sees a half-written file
