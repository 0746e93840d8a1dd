"""load_space: a registry name, a hub id, "open_clip:ARCH/TAG", or a local folder or checkpoint -> Space."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from ..media import DEFAULT_LIMITS, Limits
from .config import SpaceConfig, registry
from .resolve import fingerprint, locate
from .space import Space

# Bumped when omnivec's own preprocessing or pooling changes in a way that moves vectors.
PIPELINE_VERSION = 1
DEVICE_ENV = "OMNIVEC_DEVICE"


def load_model_space(name: str | os.PathLike, *, model_path: str | os.PathLike | None = None,
                     revision: str | None = None, device: str | None = None, audio_space: "Space | str | None" = None,
                     limits: Limits = DEFAULT_LIMITS, batch_size: int = 32, workers: int | None = None,
                     overrides: dict | None = None) -> Space:
    """Load the space of one model (spaces.load_space also loads the bound spaces `omnivec bind` writes).

    name: a built-in name (`omnivec spaces`), a Hugging Face repo id ("openai/clip-vit-base-patch32"),
    "open_clip:ViT-B-32/laion2b_s34b_b79k", or a local folder in hub layout (transformers or open_clip).
    model_path: a local copy of the weights for a named space (skips the hub).
    device: "cpu", "cuda", "cuda:1", "mps"; default $OMNIVEC_DEVICE, else "cuda" when torch sees a GPU, else "cpu".
    audio_space: a space (or its name) that embeds the sound track of videos.
    overrides: option changes, e.g. {"video": {"fps": 2}, "image": {"reduced_decode": False}}.
    """
    device = resolve_device(device)
    config = resolve_config(str(name), revision).with_overrides(overrides)
    folder = _locate(config, name, model_path)
    if config.backend == "transformers" and (folder / "open_clip_config.json").is_file() \
            and not (folder / "config.json").is_file():
        config = replace(config, backend="open_clip")  # a hub repo or folder holding an open_clip model
    if config.precision == "fp16" and device.split(":")[0] == "cpu":
        raise ConfigError(f"space {config.name!r}: precision fp16 needs a GPU (device {device!r}); on the CPU use bf16")
    backend = _make_backend(config, folder, device)
    version = space_version(config, folder)
    if isinstance(audio_space, str):
        audio_space = load_model_space(audio_space, device=device, limits=limits)
    if audio_space is not None:
        audio_space.require("audio")
    space = Space(config, backend, version, audio_space=audio_space, limits=limits, batch_size=batch_size,
                  workers=workers)
    if model_path is None and Path(str(name)).expanduser().exists():
        space.source = str(folder)  # a local model: its name alone would not find it again
    return space


def resolve_device(device: str | None = None) -> str:
    """The torch device to run on: the argument, else $OMNIVEC_DEVICE, else the GPU torch sees, else the CPU.
    A device that does not exist here is an error, never a silent move to the CPU."""
    import torch

    name = device or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    where = "the device argument" if device else (f"${DEVICE_ENV}" if os.environ.get(DEVICE_ENV) else "default")
    try:
        kind = torch.device(name).type
    except RuntimeError as e:
        raise ConfigError(f"device {name!r} (from {where}) is not a torch device (cpu, cuda, cuda:N, mps)") from e
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(kind, False):
        raise ConfigError(f"device {name!r} (from {where}) is not available on this machine")
    if kind == "cuda" and torch.device(name).index is not None and torch.device(name).index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return name


def space_version(config: SpaceConfig, folder: Path) -> str:
    """weights fingerprint . pipeline version . config version . hash of the options that move vectors."""
    options = json.dumps({k: config.to_dict()[k] for k in ("text", "image", "audio", "video")}, sort_keys=True)
    precision = "" if config.precision == "fp32" else f".{config.precision}"  # fp32 versions stay as they were
    return (f"{fingerprint(folder)}.p{PIPELINE_VERSION}.c{config.config_version}"
            f".o{hashlib.sha1(options.encode()).hexdigest()[:6]}{precision}")


def resolve_config(name: str, revision: str | None = None) -> SpaceConfig:
    reg = registry()
    if name in reg:
        cfg = reg[name]
    elif name.startswith("open_clip:"):
        arch, _, tag = name.removeprefix("open_clip:").partition("/")
        cfg = SpaceConfig(name=name, backend="open_clip", open_clip_model=arch, open_clip_pretrained=tag or None,
                          hub_id=_open_clip_hub_id(arch, tag))
    elif Path(name).expanduser().exists():
        cfg = _local_config(Path(name).expanduser())
    elif _looks_like_repo_id(name):
        cfg = SpaceConfig(name=name, backend="transformers", hub_id=name)
    else:
        raise ConfigError(f"unknown space {name!r}: not a built-in name ({', '.join(reg)}), not a hub id "
                          f"(org/name), and no such local path")
    return cfg.with_overrides({"revision": revision} if revision else None)


def _locate(config: SpaceConfig, name, model_path) -> Path:
    if Path(str(name)).expanduser().exists() and model_path is None:
        return Path(str(name)).expanduser().resolve()
    if config.backend == "imagebind":  # one .pth file at a URL, not a hub repo
        from .backends.imagebind import locate_checkpoint

        return locate_checkpoint(config, model_path)
    return locate(config.name, config.hub_id, config.revision, model_path, backend=config.backend)


def _local_config(path: Path) -> SpaceConfig:
    if path.is_file():
        raise ConfigError(f"{path}: a bare checkpoint needs its architecture: "
                          f"load_space('open_clip:ARCH', model_path='{path}')")
    if (path / "open_clip_config.json").is_file():
        return SpaceConfig(name=path.name, backend="open_clip", hub_id=str(path))
    if (path / "omnivec_imagebind.json").is_file():
        from .backends.imagebind import local_config

        return local_config(path)
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ConfigError(f"{path}: not a model folder (no config.json for transformers, no open_clip_config.json)")
    model_type = json.loads(cfg_file.read_text()).get("model_type", "")
    mods = ["text", "audio"] if model_type == "clap" else ["text", "image", "video"]
    return SpaceConfig.from_dict({"name": path.name, "backend": "transformers", "hub_id": str(path), "modalities": mods})


def _make_backend(config: SpaceConfig, folder: Path, device: str):
    if config.backend == "imagebind":
        from .backends.imagebind import ImageBindBackend

        return ImageBindBackend(folder, config, device)
    if config.backend == "open_clip":
        from .backends.openclip import OpenClipBackend

        return OpenClipBackend(folder, config, device)
    from .backends.hf import TransformersBackend

    return TransformersBackend(folder, config, device)


def _open_clip_hub_id(arch: str, tag: str) -> str | None:
    if not tag:
        return None
    try:
        import open_clip
    except ImportError as e:
        raise ConfigError("open_clip spaces need open_clip: pip install 'omnivec[openclip]'") from e
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        raise ConfigError(f"open_clip has no pretrained tag {tag!r} for {arch!r}")
    return cfg.get("hf_hub", "").strip("/") or None


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "/", "~"))
