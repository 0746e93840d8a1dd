"""Operations over HTTP: tag (zero-shot labels), moderate (policies), recommend (more like these, less like
those) and retrieve (passages for RAG), calling omnivec.ops on stored items and request inputs.

Read-only: nothing here writes to the collection (`omnivec tag` / `omnivec moderate` store results). Request values
reach omnivec.ops only as item ids (checked), vectors embedded here, parsed label and policy documents, or texts:
never as strings the ops would read as server paths (a label file, a policy file, an example file)."""
from __future__ import annotations

import time
from typing import Optional, Union

import numpy as np
from fastapi import APIRouter, Request
from pydantic import AliasChoices, BaseModel, Field

from ..errors import ConfigError, MediaError
from ..ops.moderate import moderate_vectors
from ..ops.policies import ACTIONS, PolicySet, load_policies, parse_policies
from ..ops.recommend import recommend as recommend_items
from ..ops.retrieve import retrieve as retrieve_passages
from ..ops.retrieve import thumbnail_data_uri
from ..ops.tag import as_labels, tag_vectors
from .api_routes import root_of, state_of
from .inputs import InputError, parse_part
from .media_routes import FileChanged, open_indexed
from .service import NotFound, ServerState

router = APIRouter(tags=["operations"])
MAX_TARGETS = 256

Part = dict[str, str]  # {"text": ...} | {"image"|"audio"|"video": base64 / data URI / URL when allowed}


class Targets(BaseModel):
    items: list[str] = Field(default_factory=list, description="stored item ids")
    input: list[Part] = Field(default_factory=list, description="inputs to embed, as for /embed")


class TagRequest(Targets):
    labels: Union[list[Union[str, list[str], dict]], dict[str, Union[str, list[str]]]] = Field(
        ..., description='names, lists of descriptions, {"name": descriptions} or [{"name", "descriptions"}]')
    templates: Optional[list[str]] = None
    top_k: int = 3
    min_score: Optional[float] = None


class ModerateRequest(Targets):
    policies: Union[dict, list, None] = Field(None, description="a policy document as in the policy file; "
                                              "default: the file the server was started with (--policies)")


class RecommendRequest(BaseModel):
    like: list[Union[str, Part]] = Field(default_factory=list, description="item ids or inputs")
    unlike: list[Union[str, Part]] = Field(default_factory=list)
    text: Union[str, list[str], None] = None
    like_weights: Optional[list[float]] = None
    unlike_weights: Optional[list[float]] = None
    text_weight: float = 1.0
    modalities: Optional[list[str]] = None
    k: int = 10
    diversity: float = 0.0
    exclude: list[str] = Field(default_factory=list, description="item ids never to return (already seen)")
    where: Optional[str] = None


class RetrieveRequest(BaseModel):
    query: Union[str, Part] = Field(..., description="a question, or an input such as {\"image\": ...} "
                                    "(`question` is accepted too, as the CLI calls it)",
                                    validation_alias=AliasChoices("query", "question"))
    k: int = 8
    modalities: Optional[list[str]] = None
    where: Optional[str] = None
    min_score: Optional[float] = None
    per_document: int = 3
    data_uri: bool = Field(False, description="attach image passages as small JPEG data URIs")
    thumbnail_px: int = Field(256, ge=16, le=1024)


def _targets(s: ServerState, body: Targets) -> list[tuple[dict, str, np.ndarray]]:
    """(who, modality, vector) for each stored item and each input, in that order."""
    if not body.items and not body.input:
        raise InputError("nothing to judge: give items (ids) and/or input")
    if len(body.items) + len(body.input) > MAX_TARGETS:
        raise InputError(f"at most {MAX_TARGETS} items and inputs per request")
    out = [({"item": r["id"]}, r["modality"], r["vector"])
           for r in s.item_rows(body.items, ["id", "modality", "vector"])]
    for i, part in enumerate(body.input):
        q = parse_part(part, f"input[{i}]", s.config, s.space)
        out.append(({"input": i}, q.modality, s.embedder.embed(q)))
    return out


def _by_modality(targets, fn) -> list:
    """fn(modality, vectors) per modality group, results put back in the targets' order."""
    results: list = [None] * len(targets)
    for modality in sorted({m for _, m, _ in targets}):
        pos = [j for j, (_, m, _) in enumerate(targets) if m == modality]
        for j, r in zip(pos, fn(modality, np.stack([targets[j][2] for j in pos]))):
            results[j] = r
    return results


@router.post("/tag")
def tag(body: TagRequest, request: Request) -> dict:
    """Zero-shot labels for stored items and inputs: each label's descriptions x prompt templates, ensembled."""
    s = state_of(request)
    labels = as_labels(body.labels, body.templates)  # a parsed document, never a path: see the module docstring
    targets = _targets(s, body)
    found = _by_modality(targets, lambda m, v: tag_vectors(s.space, v, labels, top_k=body.top_k,
                                                           min_score=body.min_score, modality=m))
    return {"version": labels.version(s.space), "labels": labels.names,
            "results": [{**who, "modality": m, "tags": [{"label": n, "score": sc} for n, sc in tags]}
                        for (who, m, _), tags in zip(targets, found)]}


@router.post("/moderate")
def moderate(body: ModerateRequest, request: Request) -> dict:
    """Policy decisions for stored items (their pooled vectors) and inputs."""
    s = state_of(request)
    policies = _policies(s, body.policies)
    targets = _targets(s, body)
    decisions = moderate_vectors(s.space, np.stack([v for _, _, v in targets]), policies)
    results = []
    for (who, m, _), ds in zip(targets, decisions):
        flagged = [d for d in ds if d["flagged"]]
        action = max((d["action"] for d in flagged), key=ACTIONS.index, default=None)
        results.append({**who, "modality": m, "flagged": [d["policy"] for d in flagged], "action": action,
                        "decisions": ds})
    return {"policies": [{"name": p.name, "version": p.version} for p in policies], "results": results}


def _policies(s: ServerState, doc) -> PolicySet:
    if doc is not None:
        return parse_policies(doc, source="request policies")
    if s.config.policies is None:
        raise ConfigError("no policies: send a policy document, or start the server with --policies FILE")
    return load_policies(s.config.policies)


@router.post("/recommend")
def recommend(body: RecommendRequest, request: Request) -> dict:
    """Items like the `like` examples and the `text`, unlike the `unlike` ones, optionally diversified (MMR)."""
    s = state_of(request)
    t0 = time.perf_counter()
    likes, like_ids = _examples(s, body.like, "like")
    unlikes, unlike_ids = _examples(s, body.unlike, "unlike")
    # Examples go in as vectors (resolved here from checked ids or embedded inputs), so the stored examples are
    # excluded here rather than by recommend(), which only knows examples it resolved itself.
    exclude = set(like_ids + unlike_ids + [s.check_item_id(i)[:16] for i in body.exclude])
    with s.search_guard():
        recs = recommend_items(s.col, like=likes, unlike=unlikes, text=body.text, like_weights=body.like_weights,
                               unlike_weights=body.unlike_weights, text_weight=body.text_weight,
                               modalities=body.modalities, k=min(body.k, s.config.max_k), diversity=body.diversity,
                               exclude=sorted(exclude), exclude_examples=False, where=body.where)
    s.record_query("recommend", "examples", (time.perf_counter() - t0) * 1000, [h.score for h in recs.hits],
                   body.k, recs.query)
    root = root_of(request)
    return {"hits": [{"rank": i + 1, **s.hit_json(h, root)} for i, h in enumerate(recs.hits)],
            "diversity": recs.diversity, "excluded": recs.excluded}


def _examples(s: ServerState, values: list, what: str) -> tuple[list[np.ndarray], list[str]]:
    vectors, ids = [], []
    stored = [v for v in values if isinstance(v, str)]
    rows = iter(s.item_rows(stored, ["id", "vector"]))
    for i, v in enumerate(values):
        if isinstance(v, str):
            row = next(rows)
            vectors.append(row["vector"])
            ids.append(row["id"])
        else:
            vectors.append(s.embedder.embed(parse_part(v, f"{what}[{i}]", s.config, s.space)))
    return vectors, ids


@router.post("/retrieve")
def retrieve(body: RetrieveRequest, request: Request) -> dict:
    """The passages (document chunks, images, audio/video segments) that best match a question, numbered for a
    prompt, with citations."""
    s = state_of(request)
    t0 = time.perf_counter()
    part = {"text": body.query} if isinstance(body.query, str) else body.query
    q_input = parse_part(part, "query", s.config, s.space)
    q = s.embedder.embed(q_input)
    with s.search_guard():
        result = retrieve_passages(s.col, q, k=min(body.k, s.config.max_k), modalities=body.modalities,
                                   where=body.where, min_score=body.min_score, per_document=body.per_document)
    result.query = body.query if isinstance(body.query, str) else f"<{q_input.modality}>"
    if body.data_uri:
        for p in result.hits:
            if p.modality == "image":
                _attach_thumbnail(s, p, body.thumbnail_px)
    s.record_query("retrieve", q_input.modality, (time.perf_counter() - t0) * 1000,
                   [p.score for p in result.hits], body.k, q)
    return result.to_dict()


def _attach_thumbnail(s: ServerState, passage, px: int) -> None:
    """Only from files the media routes would serve (indexed, unchanged)."""
    for path in passage.paths:
        try:
            real, _ = open_indexed(s, path)
            passage.data_uri = thumbnail_data_uri(real, px)
            return
        except (NotFound, FileChanged, MediaError) as e:
            passage.note = f"no thumbnail: {e}"
