"""Retrieval for multimodal RAG: the passages of a collection that best match a question, with what a prompt needs.

    from omnivec.ops.retrieve import retrieve
    result = retrieve(col, "which shapes are red?", k=8, modalities=["text", "image"])
    prompt = f"Answer from these sources and cite them by number.\\n\\n{result.context}\\n\\nQuestion: ..."

A passage is a text chunk (documents are stored as items whose segments are their chunks), an image, or the
best-matching time range of an audio or video item. Passages are ranked by cosine similarity to the query. Item
search scores an item by its best row, which is never below the score of any of its chunks; so once the k-th best
passage found scores at least as high as the last item fetched, no unfetched item can hold a better passage, and
until then the item search is widened. Scores across modalities share one space but are not calibrated against each
other (text-to-text similarities usually run higher than text-to-image ones); filter by modality to balance them.
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, MediaError
from ..media import DEFAULT_LIMITS, MODALITIES, Limits, load_image, to_media
from ..store.collection import Collection, Hit
from ..store.filters import sql_in

CHUNK_COLUMNS = ("chunk_text", "chunk_start", "chunk_end", "chunk_page", "chunk_heading")


@dataclass
class Passage:
    """One retrieved piece of context and where it came from."""

    rank: int
    id: str                       # the item id in the collection
    modality: str
    score: float
    paths: list[str]
    text: str | None = None       # text: the chunk
    chunk: int | None = None      # text: the chunk's index in its document
    page: int | None = None       # PDF page (1-based)
    chars: tuple[int, int] | None = None   # text: character offsets in the document's extracted text
    heading: str | None = None    # text: the section the chunk belongs to
    start: float | None = None    # audio/video: the matching segment, seconds
    end: float | None = None
    data_uri: str | None = None   # images, when asked: a small JPEG thumbnail
    note: str | None = None       # why a data URI or text is missing
    metadata: dict = field(default_factory=dict)

    @property
    def path(self) -> str | None:
        return self.paths[0] if self.paths else None

    def where(self) -> str:
        """The location inside the source: "page 2, chunk 3, chars 120-340" or "0:04.0-0:08.0"."""
        parts = []
        if self.page is not None:
            parts.append(f"page {self.page}")
        if self.chunk is not None:
            parts.append(f"chunk {self.chunk}" + (f", chars {self.chars[0]}-{self.chars[1]}" if self.chars else ""))
        if self.start is not None and self.end is not None:
            parts.append(f"{clock(self.start)}-{clock(self.end)}")
        return ", ".join(parts)

    def citation(self) -> dict:
        c: dict[str, Any] = {"n": self.rank, "path": self.path, "modality": self.modality,
                             "score": round(self.score, 6)}
        for key in ("page", "chunk", "heading", "start", "end"):
            if getattr(self, key) is not None:
                c[key] = getattr(self, key)
        if self.chars is not None:
            c["chars"] = list(self.chars)
        c["label"] = f"[{self.rank}] {self.path or self.id}" + (f", {self.where()}" if self.where() else "")
        return c

    def context(self) -> str:
        """This passage as a numbered block for a prompt."""
        head = f"[{self.rank}] {self.path or self.id}" + (f", {self.where()}" if self.where() else "")
        head += f"; {self.modality}, score {self.score:.3f}"
        if self.modality == "text":
            body = self.text if self.text is not None else "(no stored text)"
            first_line = body.split("\n", 1)[0].lstrip("#").strip()
            if self.heading and first_line != self.heading.split(" > ")[-1]:  # a chunk deep in its section
                body = f"Section: {self.heading}\n{body}"
        elif self.modality == "image":
            body = f"Image file: {self.path}" + (f" (attached as image [{self.rank}])" if self.data_uri else "")
        else:
            body = f"{self.modality.capitalize()} file: {self.path}" + (
                f", from {clock(self.start)} to {clock(self.end)}" if self.start is not None else "")
        return f"{head}\n{body}"

    def to_dict(self) -> dict:
        d = {"rank": self.rank, "id": self.id, "modality": self.modality, "score": round(self.score, 6),
             "path": self.path, "paths": self.paths, "text": self.text, "chunk": self.chunk, "page": self.page,
             "chars": list(self.chars) if self.chars else None, "heading": self.heading, "start": self.start,
             "end": self.end, "metadata": self.metadata, "citation": self.citation(), "context": self.context()}
        if self.data_uri is not None:
            d["data_uri"] = self.data_uri
        if self.note is not None:
            d["note"] = self.note
        return d


@dataclass
class Retrieval:
    query: str
    hits: list[Passage]

    @property
    def context(self) -> str:
        """Every passage as a numbered block, ready to paste into a prompt; cite them as [n]."""
        return "\n\n".join(p.context() for p in self.hits)

    @property
    def citations(self) -> list[dict]:
        return [p.citation() for p in self.hits]

    def to_dict(self) -> dict:
        return {"query": self.query, "hits": [p.to_dict() for p in self.hits], "context": self.context}


def retrieve(col: Collection, query: Any, k: int = 8, modalities: Sequence[str] | None = None,
             where: str | None = None, *, min_score: float | None = None, per_document: int = 3,
             data_uri: bool = False, thumbnail_px: int = 256, max_data_uri_bytes: int = 65536) -> Retrieval:
    """The k passages that best match `query` (text, a file path, or a query vector of the collection's space).

    `modalities` and `where` filter items as in `Collection.search`; `per_document` caps the chunks taken from one
    document; `data_uri` attaches image hits as JPEG thumbnails of at most `thumbnail_px` pixels a side and
    `max_data_uri_bytes` characters."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if per_document < 1:
        raise ConfigError(f"per_document must be at least 1, got {per_document}")
    unknown = sorted(set(modalities or ()) - set(MODALITIES))
    if unknown:
        raise ConfigError(f"unknown modality {', '.join(unknown)}: choose from {', '.join(MODALITIES)}")
    if isinstance(query, np.ndarray):
        q, label = np.asarray(query, np.float32), "<vector>"
    else:
        q, label = col.query_vector(query), str(query)
    n = max(2 * k, 16)
    while True:
        hits = col.search_vector(q, k=n, modalities=modalities, where=where, min_score=min_score)
        passages = sorted(_passages(col, hits, q, per_document, min_score), key=lambda p: -p.score)
        if len(hits) < n or (len(passages) >= k and passages[k - 1].score >= hits[-1].score):
            break
        n *= 4
    passages = passages[:k]
    for rank, p in enumerate(passages, 1):
        p.rank = rank
        if data_uri and p.modality == "image":
            _attach_thumbnail(p, thumbnail_px, max_data_uri_bytes)
    return Retrieval(label, passages)


def _passages(col: Collection, hits: list[Hit], q: np.ndarray, per_document: int,
              min_score: float | None) -> list[Passage]:
    """Item hits -> passages: a text item's best chunks, any other item as itself (with its best segment)."""
    chunks = _chunk_rows(col, [h.id for h in hits if h.modality == "text"])
    out: list[Passage] = []
    for h in hits:
        rows = chunks.get(h.id)
        if h.modality != "text" or not rows:
            out.append(Passage(0, h.id, h.modality, h.score, h.paths, start=h.start, end=h.end, metadata=h.metadata,
                               note="stored without chunk text" if h.modality == "text" else None))
            continue
        scores = np.stack([r["vector"] for r in rows]) @ q
        for j in np.argsort(-scores, kind="stable")[:per_document]:
            score = float(scores[j])
            if min_score is not None and score < min_score:
                break
            r = rows[j]
            out.append(Passage(0, h.id, "text", score, h.paths, text=r.get("chunk_text"), chunk=r["segment"],
                               page=r.get("chunk_page"), heading=r.get("chunk_heading"), metadata=h.metadata,
                               chars=(r["chunk_start"], r["chunk_end"]) if r.get("chunk_start") is not None
                               else None))
    return out


def _chunk_rows(col: Collection, ids: list[str]) -> dict[str, list[dict]]:
    """The chunk (segment) rows of the given text items, with vectors, by item id."""
    present = set(col.store.columns())
    if not ids or "chunk_text" not in present:
        return {}
    columns = ["id", "segment", "vector"] + [c for c in CHUNK_COLUMNS if c in present]
    out: dict[str, list[dict]] = {}
    for i in range(0, len(ids), 500):
        t = col.store.scan(f"kind = 'segment' AND {sql_in('id', ids[i:i + 500])}", columns)
        for r in t.to_pylist():
            r["vector"] = np.asarray(r["vector"], np.float32)
            out.setdefault(r["id"], []).append(r)
    for rows in out.values():
        rows.sort(key=lambda r: r["segment"])
    return out


def _attach_thumbnail(p: Passage, px: int, max_chars: int) -> None:
    for path in p.paths:
        try:
            p.data_uri = thumbnail_data_uri(path, px, max_chars)
            if p.data_uri is None:
                p.note = f"no thumbnail fits in {max_chars} characters"
            return
        except MediaError as e:
            p.note = f"no thumbnail: {e}"  # a moved or deleted file: try the item's next path


def thumbnail_data_uri(path: str | Path, px: int = 256, max_chars: int = 65536,
                       limits: Limits = DEFAULT_LIMITS) -> str | None:
    """A JPEG thumbnail (longest side at most `px`) as a data: URI of at most `max_chars` characters; it is shrunk
    until it fits, and None when even a 16-pixel one does not. MediaError for files that cannot be decoded."""
    image = load_image(to_media(Path(path), limits=limits), limits, min_size=px)
    image.thumbnail((px, px))
    while True:
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=80)
        uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        if len(uri) <= max_chars:
            return uri
        if max(image.size) <= 16:
            return None
        image = image.resize((max(1, int(image.width * 0.7)), max(1, int(image.height * 0.7))))


def clock(t: float) -> str:
    """Seconds as m:ss.s (h:mm:ss.s past an hour)."""
    h, rest = divmod(float(t), 3600)
    m, s = divmod(rest, 60)
    return f"{int(h)}:{int(m):02d}:{s:04.1f}" if h else f"{int(m)}:{s:04.1f}"
