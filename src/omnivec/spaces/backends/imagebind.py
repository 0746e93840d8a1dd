"""Backend for Meta's ImageBind: text, images, video, audio, depth, thermal and IMU in one 1024-d space.

The architecture comes from the reference code (PyPI `imagebind-unofficial`, module
`imagebind.models.imagebind_model`), built with the sizes the space config names, and loads a state_dict in the
official checkpoint's key layout (`imagebind_huge.pth`). Preprocessing is omnivec's own, following the reference's
data code step by step (see each method). The weights are licensed CC-BY-NC-4.0 (non-commercial use only).

A local ImageBind model is a folder holding a `.pth` state_dict and `omnivec_imagebind.json`:
    {"architecture": {ImageBindModel keyword arguments}, "checkpoint": "model.pth", "name": "...", "licence": "..."}
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import socket
import sys
import types
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from PIL import Image

from ...errors import ConfigError, ModelNotFoundError
from ..config import SpaceConfig
from .base import Backend, normalise

IMAGEBIND_FILE = "omnivec_imagebind.json"
MODALITIES = ("text", "image", "video", "audio", "depth", "thermal", "imu")
# omnivec modality -> the reference model's ModalityType key (video clips go through the vision tower)
MODEL_KEYS = {"text": "text", "image": "vision", "video": "vision", "audio": "audio", "depth": "depth",
              "thermal": "thermal", "imu": "imu"}
INSTALL_HINT = ('pip install einops iopath "imagebind-unofficial==0.1.1" --no-deps '
                "(the reference model code; its data loaders' torchaudio/pytorchvideo/decord are not needed)")

# The reference's preprocessing constants (imagebind/data.py and the model's input sizes).
IMAGE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAMPLE_RATE = 16000
AUDIO_CLIP_SECONDS = 2
AUDIO_CLIPS_PER_ITEM = 3
MEL_BINS = 128
MEL_FRAMES = 204
AUDIO_MEAN, AUDIO_STD = -4.268, 9.138
IMU_SAMPLES = 2000
IMU_MIN_TAIL = IMU_SAMPLES // 4   # a shorter trailing IMU window is dropped (unless it is the only one)


def reference_model_module():
    """`imagebind.models.imagebind_model`, imported without the package's __init__: that one imports the
    reference data loaders (torchaudio, pytorchvideo, decord), which the model code does not need."""
    mod = sys.modules.get("imagebind.models.imagebind_model")
    if mod is not None:
        return mod
    try:
        spec = importlib.util.find_spec("imagebind")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"ImageBind spaces need the reference model code: {INSTALL_HINT}")
    if "imagebind" not in sys.modules:
        pkg = types.ModuleType("imagebind")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__file__ = spec.origin
        sys.modules["imagebind"] = pkg
    try:
        return importlib.import_module("imagebind.models.imagebind_model")
    except ImportError as e:
        raise ConfigError(f"ImageBind's model code cannot be imported ({e}): {INSTALL_HINT}") from e


def bpe_path() -> Path:
    return Path(reference_model_module().__file__).parents[1] / "bpe" / "bpe_simple_vocab_16e6.txt.gz"


# ---- finding the weights -----------------------------------------------------------------------------------------
def local_config(folder: Path) -> SpaceConfig:
    """The SpaceConfig of a folder holding omnivec_imagebind.json and a checkpoint."""
    try:
        meta = json.loads((folder / IMAGEBIND_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{folder / IMAGEBIND_FILE}: cannot read: {e}") from e
    if not isinstance(meta.get("architecture"), dict):
        raise ConfigError(f"{folder / IMAGEBIND_FILE}: needs an 'architecture' object (ImageBindModel sizes)")
    return SpaceConfig.from_dict({
        "name": meta.get("name", folder.name), "backend": "imagebind", "hub_id": str(folder),
        "architecture": meta["architecture"], "modalities": list(MODALITIES),
        "licence": meta.get("licence", "CC-BY-NC-4.0"), "description": meta.get("description", "")})


def checkpoint_file(path: Path) -> Path:
    """The .pth file of a folder (named by omnivec_imagebind.json, or its only .pth), or the path itself."""
    if path.is_file():
        return path
    meta_file = path / IMAGEBIND_FILE
    if meta_file.is_file():
        name = json.loads(meta_file.read_text()).get("checkpoint")
        if name:
            if not (path / name).is_file():
                raise ModelNotFoundError(f"{path}: {IMAGEBIND_FILE} names checkpoint {name!r}, which is missing")
            return path / name
    found = sorted(path.glob("*.pth")) + sorted(path.glob("*.pt"))
    if len(found) != 1:
        raise ModelNotFoundError(f"{path}: expected one ImageBind checkpoint (.pth), found "
                                 f"{[f.name for f in found] or 'none'}")
    return found[0]


def locate_checkpoint(config: SpaceConfig, model_path: str | os.PathLike | None = None) -> Path:
    """A local model path; $OMNIVEC_MODEL_DIR/<name>/; torch hub's checkpoint folder; a download of the official
    file when its host answers. Fails within seconds, naming every place it looked, when none works."""
    from .. import resolve

    if model_path is not None:
        p = Path(model_path).expanduser()
        if not p.exists():
            raise ModelNotFoundError(f"model {config.name!r}: the given model path {p} does not exist")
        return p
    url = config.hub_id or ""
    filename = Path(urlparse(url).path).name or f"{config.name}.pth"
    looked = []
    for cand in resolve.local_candidates(config.name, None):
        looked.append(str(cand))
        if cand.is_dir() and (any(cand.glob("*.pth")) or any(cand.glob("*.pt"))):
            return cand
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / filename
    looked.append(str(hub_file))
    if hub_file.is_file():
        return hub_file
    why = _host_unreachable(url)
    if why is None:
        try:
            hub_file.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(hub_file), progress=True)
            return hub_file
        except Exception as e:  # urllib/http errors of every kind
            why = f"download failed: {e}"
    raise ModelNotFoundError(
        f"model {config.name!r} ({url}) is not on disk and cannot be fetched: {why}. Looked in: {'; '.join(looked)}. "
        f"Download {filename} where {urlparse(url).hostname} is reachable and point omnivec at it with "
        f"--model-path FILE (Python: load_space({config.name!r}, model_path=FILE)), or put it under "
        f"${resolve.MODEL_DIR_ENV}/{config.name}/. Licence: {config.licence} (non-commercial use only).")


def _host_unreachable(url: str) -> str | None:
    from .. import resolve

    u = urlparse(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        return f"no download address is known (hub location {url!r})"
    if os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "TRUE"):
        return "offline mode is on (HF_HUB_OFFLINE)"
    try:
        socket.create_connection((u.hostname, u.port or 443), timeout=resolve.PROBE_TIMEOUT).close()
    except OSError as e:
        return f"{u.hostname} is unreachable ({e.strerror or e})"
    return None


# ---- the backend -------------------------------------------------------------------------------------------------
class ImageBindBackend(Backend):
    modalities = frozenset(MODALITIES)
    image_size = IMAGE_SIZE
    sample_rate = SAMPLE_RATE
    audio_window_seconds = float(AUDIO_CLIP_SECONDS)

    def __init__(self, path: Path, config: SpaceConfig, device: str = "cpu"):
        if not config.architecture:
            raise ConfigError(f"space {config.name!r}: an ImageBind space needs 'architecture' (the model's sizes)")
        ref = reference_model_module()
        from imagebind.models.multimodal_preprocessors import SimpleTokenizer

        try:
            model = ref.ImageBindModel(**config.architecture)
        except TypeError as e:
            raise ConfigError(f"space {config.name!r}: bad ImageBind architecture: {e}") from e
        ckpt = checkpoint_file(path)
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated download, a pickle of something else
            raise ModelNotFoundError(f"{ckpt}: cannot read the checkpoint: {e}") from e
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ConfigError(f"{ckpt}: does not match the ImageBind architecture of {config.name!r}: "
                              f"{str(e)[:400]}") from e
        self.model = model.to(device).eval()
        self.device = device
        self.model_id = config.hub_id or str(ckpt)
        self.checkpoint = ckpt
        self.tokenizer = SimpleTokenizer(bpe_path=str(bpe_path()))
        self.text_length = int(self.model.modality_preprocessors["text"].context_length)
        self.max_text_tokens = self.text_length - 2
        self.video_clip_frames = int(config.architecture.get("video_frames", 2))
        self.dim = int(self.encode_text(["a"]).shape[1])

    def _forward(self, modality: str, x: torch.Tensor) -> np.ndarray:
        key = MODEL_KEYS[modality]
        with torch.inference_mode():
            out = self.model({key: x.to(self.device)})[key]
        return normalise(out)  # the model scales some modalities by a logit scale: only the direction counts

    # ---- text: CLIP's BPE, 77 tokens with start and end tokens (the reference's SimpleTokenizer)
    def count_tokens(self, texts: list[str]) -> list[int]:
        with self.tokenizer_lock:
            return [len(self.tokenizer.encode(t)) for t in texts]

    def encode_text(self, texts: list[str]) -> np.ndarray:
        with self.tokenizer_lock:
            tokens = self.tokenizer(list(texts), context_length=self.text_length)
        return self._forward("text", tokens.reshape(len(texts), -1))

    # ---- images: resize the short side to 224 (bicubic), centre crop, CLIP mean/std (data.py)
    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import v2 as T

        image = T.functional.resize(image.convert("RGB"), IMAGE_SIZE, interpolation=T.InterpolationMode.BICUBIC)
        image = T.functional.center_crop(image, IMAGE_SIZE)
        x = T.functional.pil_to_tensor(image).float().div(255.0)
        return T.functional.normalize(x, CLIP_MEAN, CLIP_STD)

    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        if pixels.ndim == 5:  # video clips (B, 3, T, H, W): one clip per item, the model's (B, S=1, ...) form
            return self._forward("video", pixels.unsqueeze(1))
        return self._forward("image", pixels)

    # ---- video: clips of `video_frames` frames. Each frame: short side to 224 (bilinear on the float frame, as
    # pytorchvideo's ShortSideScale), CLIP mean/std, centre crop (the reference also averages a left and a right
    # crop; omnivec takes the centre one, a third of the cost).
    def preprocess_video_frame(self, image: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float().div(255.0)
        c, h, w = x.shape
        size = (int(math.floor(h / w * IMAGE_SIZE)), IMAGE_SIZE) if w < h else \
            (IMAGE_SIZE, int(math.floor(w / h * IMAGE_SIZE)))
        x = torch.nn.functional.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
        x = (x - mean) / std
        top, left = math.ceil((x.shape[1] - IMAGE_SIZE) / 2), math.ceil((x.shape[2] - IMAGE_SIZE) / 2)
        return x[:, top:top + IMAGE_SIZE, left:left + IMAGE_SIZE].contiguous()

    def make_clip(self, frames: list[torch.Tensor]) -> torch.Tensor:
        """(3, T, H, W) from up to T frames; a short clip repeats its last frame (as the model pads an image)."""
        frames = list(frames) + [frames[-1]] * (self.video_clip_frames - len(frames))
        return torch.stack(frames, dim=1)

    # ---- audio: 16 kHz, 3 clips of 2 s spread over the sound (pytorchvideo's ConstantClipsPerVideoSampler),
    # each a 128-bin Kaldi fbank cut or padded to 204 frames, normalised with the reference's mean and std.
    def audio_clips(self, wave: np.ndarray) -> list[tuple[float, float, np.ndarray]]:
        sr = SAMPLE_RATE
        out = []
        for start, end in clip_spans(len(wave) / sr, AUDIO_CLIP_SECONDS, AUDIO_CLIPS_PER_ITEM):
            out.append((float(start), float(min(end, Fraction(len(wave), sr))), wave[int(start * sr):int(end * sr)]))
        return out

    def preprocess_audio(self, wave: np.ndarray) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(wave, np.float32))
        mel = waveform_to_mel(x, SAMPLE_RATE, MEL_BINS, MEL_FRAMES)
        return (mel - AUDIO_MEAN) / AUDIO_STD

    def encode_audio(self, features: list[torch.Tensor]) -> np.ndarray:
        return self._forward("audio", torch.stack(features))

    # ---- depth and thermal: single-channel maps in [0, 1] (media/sensors.py), resized like images (bicubic short
    # side 224, centre crop). The reference release has no depth/thermal transform; no mean/std is applied.
    def preprocess_map(self, values: np.ndarray) -> torch.Tensor:
        from torchvision.transforms import v2 as T

        x = torch.from_numpy(np.ascontiguousarray(values, np.float32))[None]
        x = T.functional.resize(x, IMAGE_SIZE, interpolation=T.InterpolationMode.BICUBIC, antialias=True)
        return T.functional.center_crop(x, IMAGE_SIZE).contiguous()

    def encode_sensor(self, modality: str, batch: list[torch.Tensor]) -> np.ndarray:
        return self._forward(modality, torch.stack(batch))

    # ---- IMU: (6, samples) cut into windows of 2000 samples (the model's input), the last one zero-padded
    def imu_windows(self, series: np.ndarray) -> list[tuple[int, int, torch.Tensor]]:
        n = series.shape[1]
        out = []
        for start in range(0, max(n, 1), IMU_SAMPLES):
            end = min(start + IMU_SAMPLES, n)
            if out and end - start < IMU_MIN_TAIL:
                break
            x = torch.zeros(6, IMU_SAMPLES)
            x[:, :end - start] = torch.from_numpy(series[:, start:end])
            out.append((start, end, x))
        return out


def clip_spans(duration: float, clip_seconds: float, clips: int) -> list[tuple[Fraction, Fraction]]:
    """pytorchvideo's ConstantClipsPerVideoSampler: `clips` clips starting at k * max(duration - clip, 0) / clips."""
    clip = Fraction(clip_seconds)
    step = Fraction(max(duration - clip, 0)) / clips
    return [(step * k, step * k + clip) for k in range(clips)]


# ---- Kaldi fbank ---------------------------------------------------------------------------------------------
# The reference computes torchaudio.compliance.kaldi.fbank(htk_compat=True, use_energy=False, window_type="hanning",
# num_mel_bins=128, dither=0, frame_length=25, frame_shift=10). torchaudio has no build for the torch omnivec runs on,
# so the same steps are written out here in torch, for those options and Kaldi's defaults (pre-emphasis 0.97, DC
# offset removal, power spectrum, FFT size rounded up to a power of two, mel bins from 20 Hz to Nyquist, log with a
# float32-epsilon floor).
def kaldi_fbank(wave: torch.Tensor, sample_rate: int, num_mel_bins: int) -> torch.Tensor:
    """(frames, num_mel_bins) log mel energies of a 1-D waveform."""
    window_size = int(sample_rate * 0.025)
    window_shift = int(sample_rate * 0.010)
    if wave.numel() < window_size:
        return torch.empty(0, num_mel_bins)
    fft_size = 1 << (window_size - 1).bit_length()
    m = 1 + (wave.numel() - window_size) // window_shift
    frames = wave.as_strided((m, window_size), (window_shift * wave.stride(0), wave.stride(0)))
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.nn.functional.pad(frames.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)[:, :-1]
    frames = frames - 0.97 * previous
    frames = frames * torch.hann_window(window_size, periodic=False, dtype=wave.dtype)[None]
    frames = torch.nn.functional.pad(frames, (0, fft_size - window_size))
    power = torch.fft.rfft(frames).abs().pow(2.0)
    banks = torch.nn.functional.pad(_mel_banks(num_mel_bins, fft_size, sample_rate), (0, 1))
    energies = power @ banks.T
    return torch.max(energies, torch.tensor(torch.finfo(torch.float).eps, dtype=energies.dtype)).log()


def _mel_banks(num_bins: int, fft_size: int, sample_rate: float) -> torch.Tensor:
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(0.5 * sample_rate)
    delta = (high - low) / (num_bins + 1)
    b = torch.arange(num_bins).unsqueeze(1)
    left, centre, right = low + b * delta, low + (b + 1.0) * delta, low + (b + 2.0) * delta
    freqs = 1127.0 * (1.0 + (sample_rate / fft_size) * torch.arange(fft_size / 2) / 700.0).log()
    up = (freqs[None] - left) / (centre - left)
    down = (right - freqs[None]) / (right - centre)
    return torch.max(torch.zeros(1), torch.min(up, down))


def waveform_to_mel(wave: torch.Tensor, sample_rate: int, num_mel_bins: int, target_frames: int) -> torch.Tensor:
    """The reference's waveform2melspec: remove the mean, fbank, transpose, cut or zero-pad to target_frames."""
    wave = wave - wave.mean()
    fbank = kaldi_fbank(wave, sample_rate, num_mel_bins).T  # (mel bins, frames)
    gap = target_frames - fbank.shape[1]
    fbank = torch.nn.functional.pad(fbank, (0, gap)) if gap > 0 else fbank[:, :target_frames]
    return fbank.unsqueeze(0)
