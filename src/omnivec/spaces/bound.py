"""Bound spaces: two spaces joined through text, so that one space holds what neither holds alone.

`bind(A, B, corpus, out)` embeds the same sentences in both spaces, learns a map from B's text vectors to A's
(spaces/binding.py) and writes a folder that `load_space(folder)` loads like any other space:

    out/omnivec_bound.json   which spaces (source and version), which modalities come from which, the map's kind,
                             parameters, file hash and held-out report
    out/map.safetensors      the map's arrays
    out/corpus.txt           the sentences it was fitted on

In the bound space, text and every modality A covers are embedded by A as they are; a modality only B covers (audio,
when A is CLIP and B is CLAP) is embedded by B, then mapped into A's space and re-normalised. A video's sound track,
when the bound space covers audio, is embedded too: its windows join the video's segments, so a sound finds the
video it is heard in.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, MediaError
from ..media import DEFAULT_LIMITS, Limits
from .backends.base import Backend
from .binding import TextMap, learn_map, map_from_arrays
from .config import SpaceConfig
from .factory import load_model_space
from .space import Space
from .types import Embedding

BOUND_FILE = "omnivec_bound.json"
MAP_FILE = "map.safetensors"
CORPUS_FILE = "corpus.txt"
FORMAT = 1
TEXT_CHUNK = 64


def is_bound_folder(name: str | os.PathLike) -> bool:
    try:
        return (Path(str(name)).expanduser() / BOUND_FILE).is_file()
    except OSError:
        return False


# ---- the space ---------------------------------------------------------------------------------------------------
class BoundBackend(Backend):
    """Text from the base space; image/video and audio from whichever space covers them, the base first. Vectors
    from the other space go through the map into the base space."""

    def __init__(self, base: Backend, other: Backend, text_map: TextMap):
        self.base, self.other, self.text_map = base, other, text_map
        covered = base.modalities | other.modalities
        self.owner = {m: (base if m in base.modalities else other) for m in ("image", "audio") if m in covered}
        self.modalities = frozenset({"text"} | set(self.owner) | ({"video"} if "image" in self.owner else set()))
        self.model_id = f"{base.model_id} + {other.model_id} (bound)"
        self.dim = base.dim
        self.max_text_tokens = base.max_text_tokens
        self.image_size = self.owner["image"].image_size if "image" in self.owner else None
        if "audio" in self.owner:
            self.sample_rate = self.owner["audio"].sample_rate
            self.audio_window_seconds = self.owner["audio"].audio_window_seconds
        # Token counting runs on decode threads while batches encode on the caller's: a fast tokenizer keeps its
        # padding/truncation settings as shared state, so the two must not overlap.
        self._text_lock = threading.Lock()

    def mapped(self, modality: str) -> bool:
        return self.owner.get(modality) is self.other

    def _out(self, modality: str, vectors: np.ndarray) -> np.ndarray:
        return self.text_map(vectors) if self.mapped(modality) else vectors

    def count_tokens(self, texts: list[str]) -> list[int]:
        with self._text_lock:
            return self.base.count_tokens(texts)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        with self._text_lock:
            return self.base.encode_text(texts)

    def preprocess_image(self, image):
        return self.owner["image"].preprocess_image(image)

    def encode_images(self, pixels) -> np.ndarray:
        return self._out("image", self.owner["image"].encode_images(pixels))

    def preprocess_audio(self, wave: np.ndarray):
        return self.owner["audio"].preprocess_audio(wave)

    def encode_audio(self, features) -> np.ndarray:
        return self._out("audio", self.owner["audio"].encode_audio(features))


class BoundSpace(Space):
    def __init__(self, config: SpaceConfig, backend: BoundBackend, version: str, *, base: Space, other: Space,
                 record: dict, folder: Path, limits: Limits = DEFAULT_LIMITS, workers: int | None = None,
                 batch_size: int = 32):
        super().__init__(config, backend, version, limits=limits, workers=workers, batch_size=batch_size)
        self.base, self.other, self.record, self.folder = base, other, record, folder
        self.source = str(folder)  # what load_space needs to load this space again (its name alone is not enough)
        if {"audio", "video"} <= set(self.modalities):
            self.audio_space = self  # a video's sound track is embedded (and mapped) by this same space

    def _finish(self, p) -> Embedding | MediaError:
        emb = super()._finish(p)
        track = emb.audio if isinstance(emb, Embedding) else None
        if track is not None:
            # The video's own vector stays its pictures'; the sound track's windows become extra segments.
            first = len(emb.segments)
            emb.segments = emb.segments + list(track.segments)
            emb.info["audio_track"] = {"segments": [first, len(emb.segments)], "duration": track.info.get("duration")}
        return emb

    def modality_sources(self) -> dict[str, str]:
        """Which space embeds each modality, and whether it goes through the map."""
        b: BoundBackend = self.backend  # type: ignore[assignment]
        out = {"text": self.base.name}
        for m in ("image", "video", "audio"):
            if m in self.modalities:
                key = "image" if m == "video" else m
                out[m] = f"{self.other.name} -> map" if b.mapped(key) else self.base.name
        return out

    def describe(self) -> dict:
        r = self.record
        return {**super().describe(), "bound": {
            "folder": str(self.folder), "base": r["spaces"]["base"], "other": r["spaces"]["other"],
            "modalities": self.modality_sources(), "map": {k: r["map"][k] for k in ("kind", "params", "sha256")},
            "heldout": r["fit"]["heldout"]}}


def load_bound_space(folder: str | os.PathLike, *, device: str | None = None, limits: Limits = DEFAULT_LIMITS,
                     batch_size: int = 32, workers: int | None = None, overrides: dict | None = None) -> BoundSpace:
    """Load a folder written by `bind`. The two source spaces must still have the versions the map was fitted on.
    `overrides` change the bound space's own pipeline options (windows, frame rate, pooling)."""

    folder = Path(folder).expanduser().resolve()
    record = read_record(folder)
    text_map = read_map(folder, record)
    spaces = {}
    for role in ("base", "other"):
        ref = record["spaces"][role]
        sp = load_model_space(_source_path(folder, ref), device=device, limits=limits, batch_size=batch_size,
                              workers=workers)
        if sp.version != ref["version"]:
            raise ConfigError(f"bound space {folder}: its {role} space {ref['source']!r} is now version {sp.version}, "
                              f"but the map was fitted on version {ref['version']}; bind again: omnivec bind "
                              f"{record['spaces']['base']['source']} {record['spaces']['other']['source']} "
                              f"--corpus {folder / CORPUS_FILE} --out {folder}")
        spaces[role] = sp
    base, other = spaces["base"], spaces["other"]
    if (text_map.input_dim, text_map.output_dim) != (other.dim, base.dim):
        raise ConfigError(f"bound space {folder}: the map takes {text_map.input_dim}-d to {text_map.output_dim}-d "
                          f"vectors, but the spaces are {other.dim}-d and {base.dim}-d")
    backend = BoundBackend(base.backend, other.backend, text_map)
    config = _bound_config(record, base, other, backend).with_overrides(overrides)
    return BoundSpace(config, backend, _version(record, base, other, config), base=base, other=other, record=record,
                      folder=folder, limits=limits, workers=workers, batch_size=batch_size)


def _bound_config(record: dict, base: Space, other: Space, backend: BoundBackend) -> SpaceConfig:
    image_cfg = (base if not backend.mapped("image") else other).config
    audio_cfg = (base if not backend.mapped("audio") else other).config
    licences = dict.fromkeys([base.config.licence, other.config.licence])
    return replace(base.config, name=record["name"], modalities=tuple(sorted(backend.modalities)), dim=base.dim,
                   licence=" AND ".join(licences), image=image_cfg.image, video=image_cfg.video,
                   audio=audio_cfg.audio, description=f"{base.name} bound through text to {other.name}")


def _version(record: dict, base: Space, other: Space, config: SpaceConfig) -> str:
    """Both spaces' versions, the map's hash, and a hash of the bound space's own options."""
    options = json.dumps({k: config.to_dict()[k] for k in ("text", "image", "audio", "video")}, sort_keys=True)
    return (f"bound-v{FORMAT}.m{record['map']['sha256'][:12]}.o{hashlib.sha1(options.encode()).hexdigest()[:6]}"
            f"[{base.version}][{other.version}]")


def _source_path(folder: Path, ref: dict) -> str:
    """A registry name as it is; a folder by its absolute path, else relative to the bound folder (moved together)."""
    if ref.get("relative") is None or Path(ref["source"]).exists():
        return ref["source"]
    moved = (folder / ref["relative"]).resolve()
    if moved.exists():
        return str(moved)
    raise ConfigError(f"bound space {folder}: its source space {ref['source']!r} is gone (also looked at {moved})")


def read_record(folder: Path) -> dict:
    try:
        record = json.loads((folder / BOUND_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{folder}: cannot read {BOUND_FILE}: {e}") from None
    if record.get("format") != FORMAT:
        raise ConfigError(f"{folder}: bound space format {record.get('format')!r} is not {FORMAT}")
    for key in ("name", "spaces", "map", "fit"):
        if key not in record:
            raise ConfigError(f"{folder / BOUND_FILE}: no {key!r} entry")
    return record


def read_map(folder: Path, record: dict) -> TextMap:
    from safetensors.numpy import load_file

    path = folder / record["map"]["file"]
    if not path.is_file():
        raise ConfigError(f"bound space {folder}: the map file {path.name} is missing")
    digest = _sha256(path)
    if digest != record["map"]["sha256"]:
        raise ConfigError(f"bound space {folder}: {path.name} does not match its recorded hash (changed or damaged); "
                          f"bind again")
    return map_from_arrays(record["map"]["kind"], load_file(str(path)), record["map"]["params"])


# ---- making one --------------------------------------------------------------------------------------------------
def read_corpus(corpus: str | os.PathLike | Sequence[str]) -> list[str]:
    """Sentences from a list or a text file (one per line); blank lines and repeats dropped, order kept."""
    if isinstance(corpus, (str, os.PathLike)):
        path = Path(corpus).expanduser()
        if not path.is_file():
            raise ConfigError(f"corpus {path}: no such file (one sentence per line)")
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    else:
        lines = list(corpus)
    return list(dict.fromkeys(s.strip() for s in lines if isinstance(s, str) and s.strip()))


def embed_corpus(space: Space, sentences: list[str]) -> np.ndarray:
    # In chunks: a plain space's text batches and its token counting share one tokenizer across threads, which only
    # stays safe while a call fits in one batch (see BoundBackend._text_lock).
    return np.concatenate([space.embed_text(sentences[i:i + TEXT_CHUNK]) for i in range(0, len(sentences), TEXT_CHUNK)])


def bind(base: str | os.PathLike, other: str | os.PathLike, corpus: str | os.PathLike | Sequence[str],
         out: str | os.PathLike, *, name: str | None = None, mlp: bool = True, seed: int = 0,
         device: str | None = None) -> dict:
    """Fit the map from `other`'s text space into `base`'s on `corpus` and write the bound space folder `out`.
    Returns the record written to omnivec_bound.json (with the held-out report under "fit")."""

    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not is_bound_folder(out):
        raise ConfigError(f"{out} exists and is not a bound space folder; choose an empty or new folder")
    sentences = read_corpus(corpus)
    if is_bound_folder(base) or is_bound_folder(other):
        raise ConfigError("bind two plain spaces; a bound space cannot be bound again")
    a, b = load_model_space(base, device=device), load_model_space(other, device=device)
    extra = sorted(set(b.modalities) - set(a.modalities))
    if not extra:
        raise ConfigError(f"space {b.name!r} covers nothing that {a.name!r} does not ({', '.join(b.modalities)}); "
                          f"binding them would add no modality")
    started = time.perf_counter()
    binding = learn_map(embed_corpus(b, sentences), embed_corpus(a, sentences), seed=seed, mlp=mlp)
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file(binding.map.arrays(), str(out / MAP_FILE), metadata={"kind": binding.map.kind})
    (out / CORPUS_FILE).write_text("\n".join(sentences) + "\n", encoding="utf-8")
    record = {
        "format": FORMAT, "kind": "bound-space", "name": name or out.name, "created": time.time(),
        "spaces": {"base": _ref(base, a, out), "other": _ref(other, b, out)},
        "mapped_modalities": extra,
        "map": {"kind": binding.map.kind, "params": binding.map.params, "file": MAP_FILE,
                "sha256": _sha256(out / MAP_FILE), "input_dim": binding.map.input_dim,
                "output_dim": binding.map.output_dim},
        "corpus": {"file": CORPUS_FILE, "sentences": len(sentences),
                   "sha256": hashlib.sha256("\n".join(sentences).encode()).hexdigest()},
        "fit": {**binding.report, "seed": seed, "seconds": round(time.perf_counter() - started, 2)},
    }
    tmp = out / (BOUND_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out / BOUND_FILE)  # the folder is a bound space once this file exists
    return record


def _ref(source: str | os.PathLike, space: Space, out: Path) -> dict:
    path = Path(str(source)).expanduser()
    if path.exists():
        resolved = path.resolve()
        return {"source": str(resolved), "relative": os.path.relpath(resolved, out), "name": space.name,
                "version": space.version, "dim": space.dim, "modalities": list(space.modalities)}
    return {"source": str(source), "relative": None, "name": space.name, "version": space.version, "dim": space.dim,
            "modalities": list(space.modalities)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
