"""Recipe: train a tiny CLAP (transformers ``ClapModel``) on the sounds world and save it in Hugging Face hub layout.

The model sees sound-caption pairs only (no pictures). The saved folder loads offline with ``AutoModel`` /
``ClapProcessor`` and with ``omnivec.load_space(folder)`` as a text+audio space; ``omnivec_recipe.json`` records how
it was made and its held-out sound -> caption accuracy.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .contrastive import ContrastiveBatch, TrainStats, train_contrastive
from .recipes import RECIPE_FILE, cached_model
from .shapes import CAPTION_TEMPLATES, COLOURS, SHAPES, SIZES
from .sounds import CONCEPTS, SAMPLE_RATE, SOUND_CAPTIONS, Sound, sample_sounds

RECIPE_NAME = "sounds-clap"
RECIPE_VERSION = 1  # bump when anything below changes what gets trained

# 2 s windows at 16 kHz, 16 mel bins: HTSAT's input is then a 64 x 64 "image" (spec_size 64 = 4 x 16 bins, 256
# patches); 201 mel frames fit its 256-frame width (it interpolates up). spec_size 128 with 32 bins cost 4x per step.
WINDOW_SECONDS = 2
MEL_BINS = 16
HOP = 160
FFT = 512
TEXT_TOWER = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
AUDIO_TOWER = {"spec_size": 64, "num_mel_bins": MEL_BINS, "depths": [1, 1], "num_attention_heads": [2, 2],
               "patch_embeds_hidden_size": 32, "hidden_size": 64, "window_size": 8, "enable_fusion": False}
PROJECTION_DIM = 32
MAX_TOKENS = 32
VOCAB_SIZE = 400
POOL_PER_CONCEPT = 48   # pre-rendered training sounds per concept
BATCH_SIZE = 32
LR = 3e-3
# A step budget (not wall clock), so the model does not depend on how busy the machine is. Measured on one busy core:
# 300 steps in about 90 s, held-out sound -> caption accuracy 1.0 (150 steps: 0.96, with concepts less spread apart,
# which made sound -> picture retrieval through a bound space fragile).
TRAIN_STEPS = 300
_STYLES = tuple(SOUND_CAPTIONS)


def tiny_clap_config(vocab_size: int):
    from transformers import ClapConfig

    text = dict(TEXT_TOWER, vocab_size=vocab_size, max_position_embeddings=MAX_TOKENS + 2)  # RoBERTa offsets by 2
    return ClapConfig(text_config=text, audio_config=dict(AUDIO_TOWER), projection_dim=PROJECTION_DIM)


def make_feature_extractor():
    from transformers import ClapFeatureExtractor

    # Unfused CLAP reads one mel channel; clips shorter than the window are repeated to fill it ("repeatpad").
    return ClapFeatureExtractor(feature_size=MEL_BINS, sampling_rate=SAMPLE_RATE, hop_length=HOP,
                                fft_window_size=FFT, max_length_s=WINDOW_SECONDS, frequency_min=50,
                                frequency_max=SAMPLE_RATE // 2, truncation="rand_trunc", padding="repeatpad")


def tokenizer_corpus() -> list[str]:
    """Words the tokenizer should keep whole: the sound captions and the shapes world's caption vocabulary."""
    words = {"colour": COLOURS, "shape": SHAPES, "size": tuple(SIZES), "background": COLOURS}
    lines = [t.format(colour=c.colour, shape=c.shape) for t in SOUND_CAPTIONS.values() for c in CONCEPTS]
    lines += [t.format(**{k: v[i % len(v)] for k, v in words.items()})
              for t in CAPTION_TEMPLATES.values() for i in range(len(COLOURS) * len(SHAPES))]
    return lines


def write_tokenizer(out: Path):
    """A byte-level BPE (RoBERTa's kind; CLAP's real vocabulary is not shipped in any package) in hub layout."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import RobertaTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(tokenizer_corpus() * 3, trainer)
    with tempfile.TemporaryDirectory() as tmp:
        raw.model.save(tmp)
        # transformers 5 names these `vocab`/`merges` (4.x: vocab_file/merges_file, silently ignored by 5).
        tok = RobertaTokenizerFast(vocab=f"{tmp}/vocab.json", merges=f"{tmp}/merges.txt", model_max_length=MAX_TOKENS)
    tok.save_pretrained(out)
    return tok


def audio_features(extractor, sounds: list[Sound]) -> torch.Tensor:
    """The same features omnivec's transformers backend computes for a window (one clip per window here)."""
    feats = [extractor(s.render(SAMPLE_RATE), sampling_rate=SAMPLE_RATE, return_tensors="pt")["input_features"][0]
             for s in sounds]
    return torch.stack(feats)


class ClapAsClip(torch.nn.Module):
    """The CLIP-shaped view ``train_contrastive`` drives: the audio tower stands where the image tower would, and
    CLAP's text-side temperature is the one learnable temperature (the audio-side one is copied at the end)."""

    def __init__(self, clap):
        super().__init__()
        self.clap = clap
        self.logit_scale = clap.logit_scale_t  # the same Parameter, so clamping and training reach CLAP's own

    def get_text_features(self, **kwargs):
        return self.clap.get_text_features(**kwargs)

    def get_image_features(self, pixel_values: torch.Tensor):
        return self.clap.get_audio_features(input_features=pixel_values)


class SoundBatches:
    """Random batches from a pre-computed pool, each caption in a random style. Every pair of the same concept is a
    positive, so two renderings of one concept in a batch are not pushed apart."""

    def __init__(self, sounds: list[Sound], features: torch.Tensor, tokenizer, batch_size: int, seed: int):
        self.features, self.batch_size = features, batch_size
        self.rng = np.random.default_rng(seed)
        self.concept = torch.tensor([CONCEPTS.index(s.concept) for s in sounds])
        flat = [s.caption(st) for s in sounds for st in _STYLES]
        enc = tokenizer(flat, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
        shape = (len(sounds), len(_STYLES), -1)
        self.input_ids, self.attention_mask = enc["input_ids"].view(shape), enc["attention_mask"].view(shape)

    def __call__(self, step: int) -> ContrastiveBatch:
        idx = torch.from_numpy(self.rng.choice(len(self.features), self.batch_size, replace=False))
        style = torch.from_numpy(self.rng.integers(0, len(_STYLES), self.batch_size))
        concept = self.concept[idx]
        return ContrastiveBatch(input_ids=self.input_ids[idx, style], attention_mask=self.attention_mask[idx, style],
                                pixel_values=self.features[idx], positives=concept[:, None] == concept[None, :])


@torch.no_grad()
def sound_to_caption_accuracy(model, tokenizer, extractor, sounds: list[Sound]) -> float:
    """Share of sounds whose nearest concept caption ("a red circle") is their own concept's."""
    captions = [SOUND_CAPTIONS["name"].format(colour=c.colour, shape=c.shape) for c in CONCEPTS]
    tok = tokenizer(captions, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt")
    text = torch.nn.functional.normalize(model.get_text_features(**tok).pooler_output, dim=-1)
    audio = torch.nn.functional.normalize(
        model.get_audio_features(input_features=audio_features(extractor, sounds)).pooler_output, dim=-1)
    truth = torch.tensor([CONCEPTS.index(s.concept) for s in sounds])
    return float(((audio @ text.T).argmax(dim=1) == truth).float().mean())


def recipe_key(seed: int, max_steps: int) -> dict:
    return {"recipe": RECIPE_NAME, "version": RECIPE_VERSION, "seed": seed, "max_steps": max_steps}


def train_sounds_clap(out_dir: str | Path, seed: int = 0, max_steps: int = TRAIN_STEPS,
                      log: Callable[[str], None] | None = None) -> Path:
    """Build, train (``max_steps`` steps) and save the tiny sounds CLAP."""
    from transformers import ClapModel, ClapProcessor

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tokenizer = write_tokenizer(out)
    extractor = make_feature_extractor()
    torch.manual_seed(seed)
    clap = ClapModel(tiny_clap_config(len(tokenizer)))
    sounds = sample_sounds(POOL_PER_CONCEPT, seed=seed, split="train")
    batches = SoundBatches(sounds, audio_features(extractor, sounds), tokenizer, BATCH_SIZE, seed)
    prep_seconds = time.perf_counter() - start
    stats = train_contrastive(ClapAsClip(clap), batches, max_steps=max_steps, lr=LR, seed=seed, log=log)
    with torch.no_grad():
        clap.logit_scale_a.copy_(clap.logit_scale_t)
    clap.eval()
    accuracy = sound_to_caption_accuracy(clap, tokenizer, extractor, sample_sounds(6, seed=seed, split="heldout"))
    clap.save_pretrained(out)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    extractor.save_pretrained(out)  # preprocessor_config.json for loaders that read the feature extractor alone
    _write_recipe(out, recipe_key(seed, max_steps), stats, prep_seconds, accuracy)
    return out


def _write_recipe(out: Path, key: dict, stats: TrainStats, prep_seconds: float, accuracy: float) -> None:
    record = dict(key, steps=stats.steps, train_seconds=round(stats.seconds, 2), prep_seconds=round(prep_seconds, 2),
                  final_loss=round(stats.final_loss, 4), logit_scale=round(stats.logit_scale, 2),
                  batch_size=BATCH_SIZE, pool_per_concept=POOL_PER_CONCEPT, concepts=[c.name for c in CONCEPTS],
                  heldout_sound_to_caption_accuracy=accuracy, torch_threads=torch.get_num_threads())
    (out / RECIPE_FILE).write_text(json.dumps(record, indent=2), encoding="utf-8")


def load_or_train_sounds_clap(cache_dir: str | Path, seed: int = 0, max_steps: int = TRAIN_STEPS,
                              log: Callable[[str], None] | None = None) -> Path:
    """A finished model folder under ``cache_dir``, trained only if no matching one is there. Training happens in
    a temporary sibling that is renamed into place when complete, so an interrupted run leaves nothing half-made."""
    key = recipe_key(seed, max_steps)
    final = Path(cache_dir) / f"{RECIPE_NAME}-v{RECIPE_VERSION}-seed{seed}-{max_steps}steps"
    return cached_model(final, key, lambda tmp: train_sounds_clap(tmp, seed=seed, max_steps=max_steps, log=log))
