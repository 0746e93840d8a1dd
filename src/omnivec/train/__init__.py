"""Training small models: the generated shapes world, CLIP tokenizer files, InfoNCE, and the tiny-CLIP recipe."""
from .recipes import load_or_train_shapes_clip, read_recipe, train_shapes_clip
from .shapes import Scene, concept_names, evaluation_scenes, sample_scenes
from .tokenizer import write_clip_tokenizer

__all__ = ["Scene", "concept_names", "evaluation_scenes", "load_or_train_shapes_clip", "read_recipe",
           "sample_scenes", "train_shapes_clip", "write_clip_tokenizer"]
