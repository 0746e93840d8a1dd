"""Collections: durable records pinned to one space, in an embedded engine (LanceDB), searched exactly or
through an ANN index kept consistent with the records."""
from .collection import Collection, Hit
from .open import open_collection

__all__ = ["Collection", "Hit", "open_collection"]
