"""Encoders in shared spaces: declarative configs -> factory -> Space."""
from .config import SpaceConfig, list_spaces, registry
from .loader import load_space
from .space import Space
from .types import Embedding, Segment

__all__ = ["Embedding", "Segment", "Space", "SpaceConfig", "list_spaces", "load_space", "registry"]
