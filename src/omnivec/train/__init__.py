"""Training small models: the generated shapes world, CLIP tokenizer files, InfoNCE, and the tiny-CLIP recipes."""
from .recipes import load_or_train_shapes_clip, read_recipe, train_shapes_clip
from .resnet_recipe import load_or_train_shapes_resnet_clip, train_shapes_resnet_clip
from .shapes import Scene, concept_names, evaluation_scenes, sample_scenes
from .tokenizer import write_clip_tokenizer

__all__ = ["Scene", "concept_names", "evaluation_scenes", "load_or_train_shapes_clip",
           "load_or_train_shapes_resnet_clip", "read_recipe", "sample_scenes", "train_shapes_clip",
           "train_shapes_resnet_clip", "write_clip_tokenizer"]
