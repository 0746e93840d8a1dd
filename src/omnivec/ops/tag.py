"""Zero-shot tagging: score items against label prompts and keep each item's top labels as metadata.

A label is a name plus one or more descriptions; each description is expanded by prompt templates and the label's
vector is the mean of all its prompt vectors (template ensembling, as in the CLIP paper). An item's score for a
label is the cosine similarity of their vectors. Tags are stored on the item as three fields: `tags` (top labels,
best first), `tags_scores` and `tags_version` (the label set's version, so a re-run with `new_only` tags only
items that are new or were tagged with another label set). The field name `tags` can be changed."""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..spaces import Space
from ..spaces.prompts import AUDIO_TEMPLATES, DEFAULT_TEMPLATES, expand
from ..store.collection import Collection
from ..store.filters import sql_in

# Prompt templates per item modality when none are given: CLIP's photo templates for pictures, sound templates for
# audio, and the bare description for text (a text item is compared with text, so a "photo of" frame only adds noise).
MODALITY_TEMPLATES: dict[str, tuple[str, ...]] = {"image": DEFAULT_TEMPLATES, "video": DEFAULT_TEMPLATES,
                                                  "audio": AUDIO_TEMPLATES, "text": ("{}",)}
_DOUBLE_ARTICLE = re.compile(r"\b(a|an|the) (a|an|the) ", re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Label:
    name: str
    descriptions: tuple[str, ...]


@dataclass(frozen=True)
class LabelSet:
    labels: tuple[Label, ...]
    templates: tuple[str, ...] | None = None   # None: MODALITY_TEMPLATES by each item's modality

    @property
    def names(self) -> list[str]:
        return [lb.name for lb in self.labels]

    def templates_for(self, modality: str) -> tuple[str, ...]:
        return self.templates if self.templates is not None else MODALITY_TEMPLATES.get(modality, ("{}",))

    def version(self, space: Space) -> str:
        """Changes when a label, a description, a template or the space changes: tags made under another version
        are stale."""
        content = {"labels": [[lb.name, list(lb.descriptions)] for lb in self.labels],
                   "templates": list(self.templates) if self.templates is not None else
                   {m: list(t) for m, t in sorted(MODALITY_TEMPLATES.items())},
                   "space": [space.name, space.version]}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def prompts(description: str, templates: Sequence[str]) -> list[str]:
    """A description in every template. "dog: a dog" in "a photo of a {}." reads "a photo of a dog.", not
    "a photo of a a dog.", so descriptions may be written as natural phrases."""
    return [_DOUBLE_ARTICLE.sub(r"\2 ", p) for p in expand(description, tuple(templates))]


# ---- reading label sets ---------------------------------------------------------------------------------------------
def read_labels(path: str | Path, templates: Sequence[str] | None = None) -> LabelSet:
    """Labels from a file: text (one label per line, `name` or `name: description | description`, `#` comments),
    or YAML / JSON (a list of names or {name, descriptions} entries, a mapping name -> description(s), or
    {labels: ..., templates: [...]}). `templates` given here override the file's."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"labels file {p}: cannot read it ({e})") from None
    if p.suffix.lower() in (".yaml", ".yml", ".json"):
        import yaml  # YAML is a superset of JSON

        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"labels file {p}: not valid YAML/JSON: {e}") from None
        labels = as_labels(obj, source=str(p))
    else:
        labels = _parse_text(text, str(p))
    if templates is not None:
        labels = LabelSet(labels.labels, _check_templates(templates, "--template"))
    return labels


def _parse_text(text: str, source: str) -> LabelSet:
    entries = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, rest = line.partition(":")
        descriptions = [d.strip() for d in rest.split("|")] if sep else [name.strip()]
        if not name.strip() or any(not d for d in descriptions):
            raise ConfigError(f"labels file {source} line {n}: expected `name` or `name: description | ...`, "
                              f"got {line!r}")
        entries.append((name.strip(), descriptions, f"line {n}"))
    return _label_set(entries, None, source)


def as_labels(obj: Any, templates: Sequence[str] | None = None, source: str = "labels") -> LabelSet:
    """A LabelSet from what a caller has: a LabelSet, a path, names, lists of descriptions, a mapping
    name -> description(s), or a parsed YAML/JSON document."""
    if isinstance(obj, LabelSet):
        return obj if templates is None else LabelSet(obj.labels, _check_templates(templates, "templates"))
    if isinstance(obj, (str, Path)):
        if not Path(obj).is_file():
            raise ConfigError(f"labels file {obj} does not exist")
        return read_labels(obj, templates)
    file_templates = None
    if isinstance(obj, Mapping) and "labels" in obj:
        unknown = set(obj) - {"labels", "templates"}
        if unknown:
            raise ConfigError(f"{source}: unknown keys {sorted(unknown)} (expected labels, templates)")
        if obj.get("templates") is not None:
            file_templates = _check_templates(obj["templates"], f"{source}: templates")
        obj = obj["labels"]
    entries = []
    if isinstance(obj, Mapping):
        for name, descs in obj.items():
            entries.append((str(name), _descriptions(descs, name, source), f"label {name!r}"))
    elif isinstance(obj, (list, tuple)):
        for i, entry in enumerate(obj, 1):
            where = f"entry {i}"
            if isinstance(entry, str):
                entries.append((entry, [entry], where))
            elif isinstance(entry, (list, tuple)) and entry and all(isinstance(d, str) for d in entry):
                entries.append((entry[0], list(entry), where))   # a list of descriptions is named by its first
            elif isinstance(entry, Mapping) and "name" in entry:
                unknown = set(entry) - {"name", "descriptions", "description"}
                if unknown:
                    raise ConfigError(f"{source} {where}: unknown keys {sorted(unknown)} "
                                      f"(expected name, descriptions)")
                descs = entry.get("descriptions", entry.get("description", entry["name"]))
                entries.append((str(entry["name"]), _descriptions(descs, entry["name"], source), where))
            else:
                raise ConfigError(f"{source} {where}: expected a name, a list of descriptions or "
                                  f"{{name, descriptions}}, got {entry!r}")
    else:
        raise ConfigError(f"{source}: expected a list of labels or a mapping name -> descriptions, got "
                          f"{type(obj).__name__}")
    if templates is not None:
        file_templates = _check_templates(templates, "templates")
    return _label_set(entries, file_templates, source)


def _descriptions(descs: Any, name: Any, source: str) -> list[str]:
    items = [descs] if isinstance(descs, str) else descs
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(d, str) and d.strip() for d in items):
        raise ConfigError(f"{source}: label {name!r} needs one or more non-empty descriptions, got {descs!r}")
    return [d.strip() for d in items]


def _label_set(entries: list[tuple[str, list[str], str]], templates, source: str) -> LabelSet:
    if not entries:
        raise ConfigError(f"{source}: no labels")
    seen: dict[str, str] = {}
    for name, _, where in entries:
        if not name.strip():
            raise ConfigError(f"{source} {where}: a label needs a name")
        if name in seen:
            raise ConfigError(f"{source} {where}: label {name!r} is listed twice (first at {seen[name]})")
        seen[name] = where
    return LabelSet(tuple(Label(n, tuple(d)) for n, d, _ in entries), templates)


def _check_templates(templates: Any, source: str) -> tuple[str, ...]:
    if isinstance(templates, str):
        templates = [templates]
    if not isinstance(templates, (list, tuple)) or not templates or \
            not all(isinstance(t, str) and t.strip() for t in templates):
        raise ConfigError(f"{source}: templates must be a non-empty list of strings such as 'a photo of a {{}}.'")
    if any(t.count("{}") > 1 for t in templates):
        raise ConfigError(f"{source}: a template holds one '{{}}' where the description goes")
    return tuple(templates)


# ---- scoring --------------------------------------------------------------------------------------------------------
def label_vectors(space: Space, labels: LabelSet, modality: str = "image") -> np.ndarray:
    """One unit vector per label (rows in label order): its descriptions x templates, ensembled."""
    templates = labels.templates_for(modality)
    per_label = [[p for d in lb.descriptions for p in prompts(d, templates)] for lb in labels.labels]
    return space.embed_labels(per_label, templates=("{}",))  # prompts are already expanded; the Space pools them


def score_labels(space: Space, vectors: np.ndarray, labels: Any, modality: str = "image") -> np.ndarray:
    """Cosine similarity of every vector (n, dim) with every label: an (n, labels) array."""
    labels = as_labels(labels)
    return np.asarray(vectors, np.float32) @ label_vectors(space, labels, modality).T


def tag_vectors(space: Space, vectors: np.ndarray, labels: Any, *, top_k: int = 3, min_score: float | None = None,
                modality: str = "image") -> list[list[tuple[str, float]]]:
    """The top labels (name, score), best first, for each of any vectors of `space`."""
    labels = as_labels(labels)
    return _top(score_labels(space, vectors, labels, modality), labels.names, top_k, min_score)


def _top(scores: np.ndarray, names: list[str], top_k: int, min_score: float | None) -> list[list[tuple[str, float]]]:
    if top_k < 1:
        raise ConfigError(f"top_k must be at least 1, got {top_k}")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
    return [[(names[j], round(float(row[j]), 6)) for j in idx if min_score is None or row[j] >= min_score]
            for row, idx in zip(scores, order)]


# ---- tagging a collection -------------------------------------------------------------------------------------------
@dataclass
class TagSummary:
    collection: str
    version: str
    labels: int
    field: str
    top_k: int
    min_score: float | None
    tagged: int = 0
    unchanged: int = 0                    # skipped by new_only: already tagged with this label set
    untagged: int = 0                     # no label reached min_score
    top_counts: dict[str, int] = field(default_factory=dict)   # label -> items where it is the best label
    items: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"collection": self.collection, "version": self.version, "labels": self.labels, "field": self.field,
                "top_k": self.top_k, "min_score": self.min_score, "tagged": self.tagged,
                "unchanged": self.unchanged, "untagged": self.untagged, "top_counts": self.top_counts,
                "seconds": round(self.seconds, 2), "items": self.items}


def tag_collection(col: Collection, labels: Any, *, top_k: int = 3, min_score: float | None = None,
                   new_only: bool = False, where: str | None = None, field: str = "tags",
                   templates: Sequence[str] | None = None, batch_size: int = 4096,
                   progress: bool = False) -> TagSummary:
    """Tag the collection's items (those matching `where`) with their `top_k` labels scoring at least
    `min_score`. Each batch of items is one atomic metadata commit, so an interrupted run keeps what it finished
    and `new_only=True` carries on from there."""
    t0 = time.monotonic()
    if not _IDENTIFIER.fullmatch(field):
        raise ConfigError(f"field {field!r}: use letters, digits and underscores (it becomes a column to filter on)")
    labels = as_labels(labels, templates)
    space = col.space
    version = labels.version(space)
    fields = (field, f"{field}_scores", f"{field}_version")
    summary = TagSummary(col.name, version, len(labels.labels), field, top_k, min_score)
    has_version = fields[2] in col.store.columns()
    rows = select_items(col, where, ["id", "modality", "paths"] + ([fields[2]] if has_version else []))
    if new_only and has_version:
        todo = [r for r in rows if r[fields[2]] != version]
        summary.unchanged = len(rows) - len(todo)
        rows = todo
    vectors_by_modality: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    bar = _bar(progress, len(rows))
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size]
        vecs = item_vectors(col, [r["id"] for r in batch])
        tags: list[list[tuple[str, float]]] = [[] for _ in batch]
        for modality in sorted({r["modality"] for r in batch}):
            if modality not in vectors_by_modality:
                vectors_by_modality[modality] = label_vectors(space, labels, modality)
            pos = [j for j, r in enumerate(batch) if r["modality"] == modality]
            found = _top(vecs[pos] @ vectors_by_modality[modality].T, labels.names, top_k, min_score)
            for j, t in zip(pos, found):
                tags[j] = t
        # No label above min_score: the fields stay empty (null), but the version says the item was looked at.
        col.update_metadata([r["id"] for r in batch], {
            fields[0]: [[n for n, _ in t] or None for t in tags],
            fields[1]: [[s for _, s in t] or None for t in tags],
            fields[2]: [version] * len(batch)})
        for r, t in zip(batch, tags):
            if t:
                counts[t[0][0]] = counts.get(t[0][0], 0) + 1
            else:
                summary.untagged += 1
            summary.items.append({"id": r["id"], "paths": r["paths"] or [], "modality": r["modality"],
                                  "tags": [{"label": n, "score": s} for n, s in t]})
        summary.tagged += len(batch)
        if bar:
            bar.advance(len(batch))
    if bar:
        bar.close()
    summary.top_counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    summary.seconds = time.monotonic() - t0
    return summary


def select_items(col: Collection, where: str | None, columns: list[str]) -> list[dict]:
    """Item rows matching a user's filter; a filter the engine rejects is a usage error that quotes it."""
    try:
        return col.items(where, columns).to_pylist()
    except ValueError as e:
        if not where:
            raise
        raise ConfigError(f"filter {where!r} is not valid: {e}") from None


def item_vectors(col: Collection, ids: list[str]) -> np.ndarray:
    """Item vectors in the order of `ids`."""
    t = col.items(sql_in("id", ids), ["id", "vector"])
    pos = {iid: j for j, iid in enumerate(t.column("id").to_pylist())}
    flat = np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(t.num_rows, -1)
    return flat[[pos[i] for i in ids]]


def _bar(progress: bool, total: int):
    if not progress or not total:
        return None
    from ..progress import ProgressBar

    return ProgressBar("tagging", total)
