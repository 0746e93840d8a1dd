"""Evaluation data the user already has, loaded into plain judgements.

Retrieval: queries, candidate items and a relevance matrix, from
  - a judgements file: CSV (columns `query` or `query_path`, `relevant`, optional `relevance` grade; one row per
    judged pair) or JSONL (`{"query": "...", "relevant": ["a.jpg", ...]}`, or a `{"a.jpg": 2}` map of grades);
  - an image-caption folder: every image (or audio, or video) file beside a same-name .txt, one caption per line;
  - a webdataset: tar shards whose samples pair a .jpg/.png/.wav/... member with a .txt or .json caption by key.
Zero-shot: a folder of class subfolders of images or audio.

Text queries are `str`, file queries and items are `Path` (or `Media` for tar members), so that a caption that
looks like a file name is never read as one. Every problem is a ConfigError naming the file and what is wrong.
"""
from __future__ import annotations

import csv
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ConfigError
from ..ingest.walk import is_hidden, walk
from ..media import Media, sniff

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | AUDIO_SUFFIXES | VIDEO_SUFFIXES
JUDGEMENT_SUFFIXES = {".csv", ".jsonl", ".ndjson"}
_SHOW = 5  # names listed in an error message before "and N more"


@dataclass
class RetrievalSet:
    """Queries (rows) against candidate items (columns): relevance[i, j] > 0 when item j answers query i."""

    source: str
    kind: str
    queries: list[Any]                 # str (text) or Path
    items: list[Any]                   # Path or Media
    relevance: np.ndarray              # (n_queries, n_items) float32 gains
    query_names: list[str] = field(default_factory=list)
    item_names: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"source": self.source, "kind": self.kind, "queries": len(self.queries), "items": len(self.items),
                "judged_pairs": int((self.relevance > 0).sum())}


@dataclass
class ZeroShotSet:
    """Files with a true class each; `labels` are what the classes are called in prompts."""

    source: str
    classes: list[str]                 # folder names
    labels: list[str | list[str]]      # a label or several descriptions per class
    items: list[Path]
    targets: np.ndarray                # (n,) class index per item

    def describe(self) -> dict:
        return {"source": self.source, "kind": "class-folders", "classes": len(self.classes),
                "items": len(self.items),
                "per_class": {c: int((self.targets == i).sum()) for i, c in enumerate(self.classes)}}


# ---- retrieval ------------------------------------------------------------------------------------------------
def load_retrieval(path: str | Path, extra_items: Sequence[str | Path] = ()) -> RetrievalSet:
    """Load retrieval judgements from a caption folder, a folder of tar shards, a tar shard or a CSV/JSONL file.
    `extra_items` (files or folders) join the candidates as distractors that answer no query."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"dataset {path} does not exist")
    if path.is_dir():
        shards = sorted(p for p in path.iterdir() if _is_tar(p))
        data = load_webdataset(shards) if shards else load_caption_folder(path)
    elif _is_tar(path):
        data = load_webdataset([path])
    elif path.suffix.lower() in JUDGEMENT_SUFFIXES:
        data = load_judgements(path)
    else:
        raise ConfigError(f"dataset {path}: expected a folder, a webdataset .tar or a .csv/.jsonl judgements file")
    if extra_items:
        data = _with_distractors(data, extra_items)
    if len(data.items) < 2:
        raise ConfigError(f"dataset {path}: retrieval needs at least 2 candidate items, found {len(data.items)}")
    return data


def load_caption_folder(root: Path) -> RetrievalSet:
    """Media files with a same-name .txt caption file (one caption per non-empty line)."""
    media: dict[Path, Path] = {}
    captions: dict[Path, Path] = {}
    for p in walk(root):
        stem = p.with_suffix("")
        if p.suffix.lower() == ".txt":
            captions[stem] = p
        elif p.suffix.lower() in MEDIA_SUFFIXES:
            if stem in media:
                raise ConfigError(f"caption folder {root}: {media[stem].name} and {p.name} share the caption "
                                  f"{stem.name}.txt; give each file its own caption")
            media[stem] = p
    _require_none(sorted(str(media[s]) for s in media if s not in captions),
                  f"caption folder {root}: no caption file (same name, .txt) for")
    _require_none(sorted(str(captions[s]) for s in captions if s not in media),
                  f"caption folder {root}: no image, audio or video file for the caption")
    if not media:
        raise ConfigError(f"caption folder {root}: no media files with captions found")
    items, texts, owners = [], [], []
    for stem in sorted(media):
        lines = [ln.strip() for ln in _read_text(captions[stem]).splitlines() if ln.strip()]
        if not lines:
            raise ConfigError(f"caption folder {root}: {captions[stem]} is empty")
        texts += lines
        owners += [len(items)] * len(lines)
        items.append(media[stem])
    return _pairs(str(root), "caption-folder", texts, items, owners, [str(p) for p in items])


def load_webdataset(shards: Sequence[Path]) -> RetrievalSet:
    """Samples of tar shards grouped by key (the member path up to the first dot of its file name, as webdataset
    does); each needs one media member and a .txt (one caption per line) or .json (caption/captions/text)."""
    items, names, texts, owners = [], [], [], []
    for shard in shards:
        for key, members in _tar_samples(shard):
            where = f"{shard}:{key}"
            found = [ext for ext in members if "." + ext.rsplit(".", 1)[-1] in MEDIA_SUFFIXES]
            if len(found) != 1:
                raise ConfigError(f"webdataset {where}: expected one image/audio/video member, found "
                                  f"{len(found)} ({', '.join(sorted(members))})")
            caps = _tar_captions(where, members)
            if not caps:
                raise ConfigError(f"webdataset {where}: no caption (.txt or .json with caption, captions or text)")
            ext = found[0]
            name = f"{where}.{ext}"
            kind = sniff(members[ext][:256])
            if kind is None or kind[0] not in ("image", "audio", "video"):
                raise ConfigError(f"webdataset {name}: content is not a recognised image, audio or video format")
            texts += caps
            owners += [len(items)] * len(caps)
            items.append(Media(name=name, modality=kind[0], mime=kind[1], data=members[ext]))
            names.append(name)
    if not items:
        raise ConfigError(f"webdataset {', '.join(map(str, shards))}: no samples found")
    return _pairs(", ".join(map(str, shards)), "webdataset", texts, items, owners, names)


def load_judgements(path: Path) -> RetrievalSet:
    """Relevance judgements from CSV (one judged pair per row) or JSONL (one query per line)."""
    judged: dict[tuple[str, str], dict[Path, float]] = {}   # (kind, query) -> {item: grade}
    for where, query, relevant in _judgement_rows(path):
        if not relevant:
            raise ConfigError(f"{where}: no relevant items")
        grades = judged.setdefault(query, {})
        for item, grade in relevant.items():
            if not isinstance(grade, (int, float)) or grade < 0:
                raise ConfigError(f"{where}: relevance of {item} must be a number >= 0, got {grade!r}")
            p = _resolve(path, item)
            if not p.is_file():
                raise ConfigError(f"{where}: relevant item {item} not found (looked for {p})")
            grades[p] = max(grades.get(p, 0.0), float(grade))
    if not judged:
        raise ConfigError(f"judgements file {path} has no judgements")
    items = sorted({p for grades in judged.values() for p in grades})
    column = {p: j for j, p in enumerate(items)}
    relevance = np.zeros((len(judged), len(items)), np.float32)
    queries, names = [], []
    for i, ((kind, query), grades) in enumerate(judged.items()):
        for p, g in grades.items():
            relevance[i, column[p]] = g
        if kind == "path":
            qp = _resolve(path, query)
            if not qp.is_file():
                raise ConfigError(f"judgements file {path}: query file {query} not found (looked for {qp})")
            queries.append(qp)
        else:
            queries.append(query)
        names.append(query)
    return RetrievalSet(str(path), "judgements", queries, list(items), relevance, names, [str(p) for p in items])


def _judgement_rows(path: Path) -> Iterable[tuple[str, tuple[str, str], dict[str, float]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = set(reader.fieldnames or [])
            if "relevant" not in fields or not fields & {"query", "query_path"}:
                raise ConfigError(f"judgements file {path}: needs columns `query` (or `query_path`) and `relevant`, "
                                  f"has {', '.join(sorted(fields)) or 'none'}")
            for n, row in enumerate(reader, 2):
                where = f"{path}, row {n}"
                grade = row.get("relevance") or "1"
                try:
                    value = float(grade)
                except ValueError:
                    raise ConfigError(f"{where}: relevance {grade!r} is not a number") from None
                item = (row.get("relevant") or "").strip()
                yield where, _query_of(where, row), ({item: value} if item else {})
    else:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}, line {n}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"{where}: not JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"{where}: expected an object with `query` and `relevant`")
                rel = row.get("relevant")
                if isinstance(rel, str):
                    rel = {rel: 1.0}
                elif isinstance(rel, list):
                    rel = {str(x): 1.0 for x in rel}
                elif not isinstance(rel, dict):
                    raise ConfigError(f"{where}: `relevant` must be a path, a list of paths or a map of path to grade")
                yield where, _query_of(where, row), rel


def _query_of(where: str, row: dict) -> tuple[str, str]:
    if row.get("query_path"):
        return "path", str(row["query_path"]).strip()
    if row.get("query") is not None and str(row["query"]).strip():
        return "text", str(row["query"]).strip()
    raise ConfigError(f"{where}: empty query (give `query` text or a `query_path` file)")


def _pairs(source: str, kind: str, texts: list[str], items: list, owners: list[int], names: list[str]) -> RetrievalSet:
    """Captions as queries, one row each (as CLIP_benchmark keeps every caption), relevant to their own item."""
    relevance = np.zeros((len(texts), len(items)), np.float32)
    relevance[np.arange(len(texts)), owners] = 1.0
    return RetrievalSet(source, kind, texts, items, relevance, list(texts), names)


def _with_distractors(data: RetrievalSet, extra: Sequence[str | Path]) -> RetrievalSet:
    known = {str(p) for p in data.item_names}
    added = []
    for e in extra:
        e = Path(e)
        if not e.exists():
            raise ConfigError(f"extra items {e} do not exist")
        added += [p for p in walk(e) if p.suffix.lower() in MEDIA_SUFFIXES and str(p) not in known]
    added = sorted(set(added))
    relevance = np.concatenate([data.relevance, np.zeros((len(data.queries), len(added)), np.float32)], axis=1)
    return RetrievalSet(data.source, data.kind, data.queries, data.items + added, relevance, data.query_names,
                        data.item_names + [str(p) for p in added])


def _tar_samples(shard: Path) -> Iterable[tuple[str, dict[str, bytes]]]:
    """(key, {extension: bytes}) per sample, in the order samples appear (members of a sample are adjacent)."""
    samples: dict[str, dict[str, bytes]] = {}
    try:
        with tarfile.open(shard) as tar:
            for m in tar:
                base = m.name.rsplit("/", 1)[-1]
                if not m.isfile() or is_hidden(base) or "." not in base:
                    continue
                prefix = m.name[: len(m.name) - len(base)]
                stem, ext = base.split(".", 1)
                data = tar.extractfile(m).read()
                samples.setdefault(prefix + stem, {})[ext.lower()] = data
    except (tarfile.TarError, OSError) as e:
        raise ConfigError(f"webdataset {shard}: cannot read the tar file ({e})") from None
    return samples.items()


def _tar_captions(where: str, members: dict[str, bytes]) -> list[str]:
    if "txt" in members:
        return [ln.strip() for ln in _decode(where + ".txt", members["txt"]).splitlines() if ln.strip()]
    if "json" in members:
        try:
            meta = json.loads(_decode(where + ".json", members["json"]))
        except json.JSONDecodeError as e:
            raise ConfigError(f"webdataset {where}.json: not JSON ({e.msg})") from None
        for key in ("captions", "caption", "text"):
            value = meta.get(key) if isinstance(meta, dict) else None
            if isinstance(value, str) and value.strip():
                return [value.strip()]
            if isinstance(value, list):
                return [str(v).strip() for v in value if str(v).strip()]
    return []


# ---- zero-shot ------------------------------------------------------------------------------------------------
def load_zeroshot(root: str | Path, labels_file: str | Path | None = None) -> ZeroShotSet:
    """A folder whose subfolders are the classes; every image or audio file in a subfolder belongs to it. Class
    names in prompts are the folder names with _ and - as spaces, unless `labels_file` (JSON: folder -> label or
    list of descriptions) says otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"zero-shot dataset {root} is not a folder of class subfolders")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))
    if len(folders) < 2:
        raise ConfigError(f"zero-shot dataset {root}: needs at least 2 class subfolders, found {len(folders)}")
    items, targets = [], []
    for c, folder in enumerate(folders):
        files = [p for p in walk(folder) if p.suffix.lower() in MEDIA_SUFFIXES]
        if not files:
            raise ConfigError(f"zero-shot dataset {root}: class folder {folder.name!r} has no image or audio files")
        items += files
        targets += [c] * len(files)
    classes = [f.name for f in folders]
    labels: list[str | list[str]] = [c.replace("_", " ").replace("-", " ") for c in classes]
    if labels_file is not None:
        custom = _read_labels(Path(labels_file))
        unknown = sorted(set(custom) - set(classes))
        if unknown:
            raise ConfigError(f"labels file {labels_file}: no class folder named {', '.join(unknown)} in {root}")
        labels = [custom.get(c, lab) for c, lab in zip(classes, labels)]
    return ZeroShotSet(str(root), classes, labels, items, np.asarray(targets, np.int64))


def _read_labels(path: Path) -> dict[str, str | list[str]]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise ConfigError(f"labels file {path}: not JSON ({e.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, (str, list)) and v for v in data.values()):
        raise ConfigError(f"labels file {path}: expected an object mapping class folder to a label or a list of "
                          f"descriptions")
    return data


# ---- helpers --------------------------------------------------------------------------------------------------
def _is_tar(p: Path) -> bool:
    return p.is_file() and (p.name.lower().endswith((".tar", ".tar.gz", ".tgz")))


def _resolve(base_file: Path, item: str) -> Path:
    p = Path(item).expanduser()
    return p if p.is_absolute() else (base_file.parent / p)


def _read_text(path: Path) -> str:
    try:
        return _decode(str(path), path.read_bytes())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None


def _decode(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: not UTF-8 text (byte {e.start})") from None


def _require_none(problems: list[str], message: str) -> None:
    if problems:
        more = f" and {len(problems) - _SHOW} more" if len(problems) > _SHOW else ""
        raise ConfigError(f"{message} {', '.join(problems[:_SHOW])}{more}")
