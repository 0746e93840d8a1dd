"""Clustering a collection's items: k-means or HDBSCAN (scikit-learn) over their unit vectors; clusters named by
the nearest label prompt or by their most central items; an optional 2-D map (maps.py).

    result = cluster(col, method="kmeans", k=6, labels=["red", "blue", "green"])
    result.assignments          # cluster id per item, in result.items order (-1: HDBSCAN noise)
    [(c.name, c.size) for c in result.clusters]
    result.save_map("map.html", projection="umap")
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError, OmnivecError

METHODS = ("kmeans", "hdbscan")
Labels = Sequence[str] | Mapping[str, Sequence[str]] | str | Path   # or a tag.LabelSet


# ---- what is clustered ----------------------------------------------------------------------------------------------
@dataclass
class ItemVectors:
    """Item rows of a collection (one pooled vector per item), in a fixed order."""

    ids: list[str]
    paths: list[list[str]]
    modalities: list[str]
    vectors: np.ndarray             # (n, dim) float32, unit rows

    def __len__(self) -> int:
        return len(self.ids)

    def label(self, i: int) -> str:
        """What a person recognises an item by: its first path, else its id."""
        return self.paths[i][0] if self.paths[i] else self.ids[i]


def modality_filter(where: str | None, modalities: Sequence[str] | None) -> str | None:
    conds = [f"({where})"] if where else []
    if modalities:
        conds.append("modality IN (" + ", ".join(f"'{m}'" for m in modalities) + ")")
    return " AND ".join(conds) or None


def item_vectors(col, where: str | None = None, modalities: Sequence[str] | None = None) -> ItemVectors:
    """Every item row matching the filter, with its vector."""
    t = col.items(modality_filter(where, modalities), ["id", "paths", "modality", "vector"])
    n = t.num_rows
    vectors = (np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(n, col.dim)
               if n else np.zeros((0, col.dim), np.float32))
    return ItemVectors(ids=t.column("id").to_pylist(), paths=[p or [] for p in t.column("paths").to_pylist()],
                       modalities=t.column("modality").to_pylist(), vectors=vectors)


# ---- labels ---------------------------------------------------------------------------------------------------------
def label_vectors(space, labels: Labels, modality: str,
                  templates: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Label names and one ensembled text vector per label. Labels are read as `omnivec tag` reads them (a file,
    names, a mapping name -> descriptions), so one label file serves tagging and clustering."""
    from .tag import as_labels, label_vectors as tag_label_vectors

    label_set = as_labels(labels, templates)
    return label_set.names, tag_label_vectors(space, label_set, modality)


# ---- results --------------------------------------------------------------------------------------------------------
@dataclass
class Cluster:
    id: int                                  # -1: HDBSCAN's noise (items in no dense region)
    name: str
    size: int
    members: list[str]                       # item ids, most central first
    central: list[dict]                      # the few most central items: id, path, score (cosine to the centroid)
    labels: list[dict] = field(default_factory=list)   # best label prompts for the centroid: label, score
    label_agreement: float | None = None     # share of members whose own nearest label is the cluster's label

    def to_dict(self, members: bool = True) -> dict:
        d = {"id": self.id, "name": self.name, "size": self.size, "central": self.central, "labels": self.labels,
             "label_agreement": self.label_agreement}
        if members:
            d["members"] = self.members
        return d


@dataclass
class ClusterResult:
    method: str
    params: dict
    items: ItemVectors
    assignments: np.ndarray                  # cluster id per item, in items order
    clusters: list[Cluster]
    maps: list[str] = field(default_factory=list)
    projection: str | None = None

    @property
    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.clusters}

    @property
    def sizes(self) -> dict[int, int]:
        return {c.id: c.size for c in self.clusters}

    def cluster_of(self, item_id: str) -> Cluster:
        cid = int(self.assignments[self.items.ids.index(item_id)])
        return next(c for c in self.clusters if c.id == cid)

    def save_map(self, path: str | Path, projection: str = "pca", seed: int = 0) -> Path:
        from .maps import project, save_map

        coords, used = project(self.items.vectors, projection, seed)
        self.projection = used
        hover = [f"{self.items.label(i)} ({self.items.modalities[i]})" for i in range(len(self.items))]
        out = save_map(path, coords, self.assignments.tolist(), self.names, hover,
                       title=f"{self.params.get('collection', '')}: {self.method}, {len(self.clusters)} clusters "
                             f"({used.upper()})")
        self.maps.append(str(out))
        return out

    def to_dict(self, members: bool = True) -> dict:
        return {"method": self.method, "params": self.params, "n_items": len(self.items),
                "clusters": [c.to_dict(members) for c in self.clusters],
                "items": [{"id": self.items.ids[i], "path": self.items.label(i), "modality": self.items.modalities[i],
                           "cluster": int(self.assignments[i])} for i in range(len(self.items))],
                "maps": self.maps, "projection": self.projection}


# ---- clustering -----------------------------------------------------------------------------------------------------
def cluster(col, method: str = "kmeans", k: int = 8, *, where: str | None = None,
            modalities: str | Sequence[str] | None = None, labels: Labels | None = None,
            templates: Sequence[str] | None = None, min_cluster_size: int = 5, min_samples: int | None = None,
            seed: int = 0, n_central: int = 3) -> ClusterResult:
    """Cluster the items of `col` (optionally filtered by SQL `where` and modalities).

    method "kmeans" makes `k` clusters; "hdbscan" finds as many dense groups as there are, of at least
    `min_cluster_size` items, and leaves the rest as noise (cluster -1); `min_samples` (default: min_cluster_size,
    as in scikit-learn) sets how conservative it is: small values (1-2) leave fewer items as noise and keep apart
    groups that differ in one attribute but vary in others. `labels` (names, a mapping name ->
    descriptions, or a labels file as `omnivec tag` reads it) name each cluster by the label prompt nearest to its
    centroid, with prompt templates for the items' most common modality; without labels a cluster is named after
    its most central item."""
    mods = col.check_modalities(modalities)
    items = item_vectors(col, where, mods)
    if len(items) == 0:
        raise OmnivecError(f"collection {col.name!r} has no items to cluster"
                           + (f" matching {modality_filter(where, mods)}" if where or mods else ""))
    assignments = fit(items.vectors, method, k, min_cluster_size, seed, min_samples)
    label_names = label_vecs = None
    if labels is not None:
        modality = max(set(items.modalities), key=items.modalities.count)
        label_names, label_vecs = label_vectors(col.space, labels, modality, templates)
    clusters = describe_clusters(items, assignments, label_names, label_vecs, n_central)
    params = {"collection": col.name, "k": k if method == "kmeans" else None, "where": where, "modalities": mods,
              "min_cluster_size": min_cluster_size if method == "hdbscan" else None,
              "min_samples": min_samples if method == "hdbscan" else None, "seed": seed,
              "labels": label_names}
    return ClusterResult(method, params, items, assignments, clusters)


def fit(vectors: np.ndarray, method: str = "kmeans", k: int = 8, min_cluster_size: int = 5,
        seed: int = 0, min_samples: int | None = None) -> np.ndarray:
    """Cluster ids for unit vectors. On unit vectors Euclidean distance is a monotone function of cosine
    similarity (|a-b|^2 = 2 - 2 a.b), so scikit-learn's Euclidean k-means and HDBSCAN cluster by cosine."""
    n = len(vectors)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        if not 1 <= k <= n:
            raise ConfigError(f"k-means needs 1 <= k <= the number of items ({n}); got k={k}")
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vectors).astype(int)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        if min_cluster_size < 2 or (min_samples is not None and min_samples < 1):
            raise ConfigError(f"HDBSCAN needs min_cluster_size >= 2 and min_samples >= 1; got {min_cluster_size} "
                              f"and {min_samples}")
        if n < 2:
            return np.full(n, -1)
        # copy=True: scikit-learn may otherwise write into the caller's array (and warns that its default changes)
        return HDBSCAN(min_cluster_size=min(min_cluster_size, n), min_samples=None if min_samples is None else
                       min(min_samples, n), copy=True).fit_predict(vectors).astype(int)
    raise ConfigError(f"unknown clustering method {method!r}; use one of {', '.join(METHODS)}")


def describe_clusters(items: ItemVectors, assignments: np.ndarray, label_names: list[str] | None,
                      label_vecs: np.ndarray | None, n_central: int = 3) -> list[Cluster]:
    """Members ranked by closeness to their cluster's centroid; a name from labels or the most central item."""
    clusters = []
    member_labels = (label_vecs @ items.vectors.T).argmax(0) if label_vecs is not None else None
    for cid in sorted(set(assignments.tolist()), key=lambda c: (c < 0, c)):   # noise last
        idx = np.flatnonzero(assignments == cid)
        centroid = items.vectors[idx].mean(0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        closeness = items.vectors[idx] @ centroid
        order = idx[np.argsort(-closeness, kind="stable")]
        central = [{"id": items.ids[i], "path": items.label(i), "score": round(float(items.vectors[i] @ centroid), 6)}
                   for i in order[:n_central]]
        c = Cluster(id=int(cid), name="", size=len(idx), members=[items.ids[i] for i in order], central=central)
        if label_vecs is not None:
            scores = label_vecs @ centroid
            top = np.argsort(-scores, kind="stable")[:3]
            c.labels = [{"label": label_names[j], "score": round(float(scores[j]), 6)} for j in top]
            c.label_agreement = round(float(np.mean(member_labels[idx] == top[0])), 4)
            c.name = label_names[top[0]]
        else:
            c.name = Path(central[0]["path"]).stem if central else str(cid)
        if cid < 0:
            c.name = "noise"
        clusters.append(c)
    _disambiguate(clusters)
    return clusters


def _disambiguate(clusters: list[Cluster]) -> None:
    """Two clusters may share their best label: later ones (smaller or less central) get a number."""
    seen: dict[str, int] = {}
    for c in sorted(clusters, key=lambda c: -c.size):
        n = seen.get(c.name, 0) + 1
        seen[c.name] = n
        if n > 1:
            c.name = f"{c.name} ({n})"
