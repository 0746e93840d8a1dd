"""omnivec: text, images, audio and video in one shared vector space.

    import omnivec
    space = omnivec.load_space("clip-vit-b-32")
    vectors = space.embed(["a photo of a cat", "cat.jpg"])
"""
import os

# MKL picks GEMM kernels by matrix shape, so a vector's last bits depended on its batch companions. Strict
# conditional numerical reproducibility makes every row independent of the batch: the same input gives the same
# vector, bit for bit. MKL reads this at its first call, so it is set when omnivec is imported, before any model runs.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from .errors import ConfigError, MediaError, ModalityError, ModelNotFoundError, OmnivecError
from .media import Limits
from .spaces import Embedding, Segment, Space, list_spaces, load_space
from .spaces.libraries import LibraryVersionWarning
from .store import Collection, Hit, open_collection

__version__ = "0.1.0"
__all__ = ["ConfigError", "Embedding", "LibraryVersionWarning", "Limits", "MediaError", "ModalityError",
           "ModelNotFoundError",
           "OmnivecError", "Collection", "Hit", "open_collection", "Segment", "Space", "list_spaces", "load_space", "__version__"]
