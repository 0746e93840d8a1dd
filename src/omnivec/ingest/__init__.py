"""Ingestion: folders and manifests -> content-hash dedup -> embedding -> batched, resumable writes."""
from .pipeline import IndexSummary, index

__all__ = ["IndexSummary", "index"]
