"""ImageBind spaces: a tiny model of the real architecture (the reference code, `imagebind-unofficial`), saved as a
state_dict in the official checkpoint's key layout, loaded through `omnivec.load_space`, and compared with the
reference model's forward pass on the reference preprocessing.

Where the reference preprocessing needs packages that cannot be installed beside this torch (its data.py imports
torchaudio, pytorchvideo and decord), the test writes the reference steps out itself; those helpers are marked
"TRANSCRIPTION of imagebind/data.py" so it is clear what they stand for."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("einops") is None or importlib.util.find_spec("imagebind") is None:
    pytest.skip("ImageBind tests need the reference model code: pip install einops iopath "
                "'imagebind-unofficial==0.1.1' --no-deps", allow_module_level=True)

import omnivec  # noqa: E402
from omnivec.errors import MediaError, ModalityError, ModelNotFoundError  # noqa: E402
from omnivec.spaces.backends import imagebind as ib  # noqa: E402

TOL = 1e-5
TINY = dict(video_frames=2, out_embed_dim=32, vision_embed_dim=32, vision_num_blocks=1, vision_num_heads=2,
            audio_embed_dim=32, audio_num_blocks=1, audio_num_heads=2, text_embed_dim=32, text_num_blocks=1,
            text_num_heads=2, depth_embed_dim=32, depth_num_blocks=1, depth_num_heads=2, thermal_embed_dim=32,
            thermal_num_blocks=1, thermal_num_heads=2, imu_embed_dim=32, imu_num_blocks=1, imu_num_heads=2)


@pytest.fixture(scope="module")
def ref():
    return ib.reference_model_module()


@pytest.fixture(scope="module")
def tiny(ref, tmp_path_factory):
    """(folder, reference model): random weights moved off their init so every layer matters."""
    torch.manual_seed(0)
    model = ref.ImageBindModel(**TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("ib") / "tiny-imagebind"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "weights.pth")
    (folder / "omnivec_imagebind.json").write_text(json.dumps({"architecture": TINY, "checkpoint": "weights.pth"}))
    return folder, model


@pytest.fixture(scope="module")
def space(tiny):
    return omnivec.load_space(tiny[0])


def reference(model, key: str, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        out = model({key: x})[key]
    return torch.nn.functional.normalize(out, dim=-1).numpy()


def close(a, b) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@contextlib.contextmanager
def parameters_on_meta():
    """Every parameter moves to the meta device as it is registered, so the 1.2B-parameter model costs no memory.
    (A plain `torch.device("meta")` context fails: the reference calls .item() on a tensor while building.)"""
    register = torch.nn.Module.register_parameter

    def on_meta(module, name, param):
        register(module, name, param if param is None else torch.nn.Parameter(param.to("meta"), param.requires_grad))

    torch.nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


# ---- the checkpoint layout and the registry -------------------------------------------------------------------
def test_registry_sizes_build_the_official_huge_layout(ref, tiny):
    """The registry's architecture builds exactly the key -> shape map of the reference `imagebind_huge()` (the
    layout of imagebind_huge.pth); the tiny checkpoint has the same keys. Built on the meta device: no memory."""
    cfg = omnivec.spaces.config.registry()["imagebind-huge"]
    with parameters_on_meta():
        official = {k: tuple(v.shape) for k, v in ref.imagebind_huge(pretrained=False).state_dict().items()}
        ours = {k: tuple(v.shape) for k, v in ref.ImageBindModel(**cfg.architecture).state_dict().items()}
    assert ours == official
    first_blocks = {k for k in official if not re.search(r"\.blocks\.[1-9][0-9]*\.", k)}  # tiny: one block each
    assert set(torch.load(tiny[0] / "weights.pth", weights_only=True)) == first_blocks
    assert "modality_preprocessors.vision.rgbt_stem.proj.1.weight" in official  # the Conv3d patch stem
    assert cfg.licence == "CC-BY-NC-4.0" and cfg.dim == official["modality_heads.vision.2.weight"][0]


def test_omnivec_spaces_lists_the_non_commercial_licence():
    r = subprocess.run([sys.executable, "-m", "omnivec", "spaces", "--json"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["imagebind-huge"]["licence"] == "CC-BY-NC-4.0"
    assert set(rows["imagebind-huge"]["modalities"]) == set(ib.MODALITIES)


def test_missing_weights_fail_fast_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIVEC_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as e:
        omnivec.load_space("imagebind-huge")
    msg = str(e.value)
    assert "imagebind_huge.pth" in msg and "model_path" in msg and "CC-BY-NC-4.0" in msg


def test_checkpoint_of_another_architecture_is_refused(tiny, tmp_path):
    folder = tmp_path / "wrong"
    folder.mkdir()
    shutil.copy(tiny[0] / "weights.pth", folder / "weights.pth")
    (folder / "omnivec_imagebind.json").write_text(json.dumps({"architecture": {**TINY, "out_embed_dim": 16}}))
    with pytest.raises(omnivec.errors.ConfigError, match="does not match the ImageBind architecture"):
        omnivec.load_space(folder)


def test_core_import_stays_light():
    code = "import sys, omnivec; print(sorted(m for m in ('imagebind', 'einops', 'iopath') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_space_describes_its_modalities(space):
    assert space.modalities == ("text", "image", "audio", "video", "depth", "thermal", "imu")
    assert space.dim == TINY["out_embed_dim"]
    assert space.describe()["licence"] == "CC-BY-NC-4.0"


# ---- parity with the reference model ---------------------------------------------------------------------------
def test_text_matches_reference(space, tiny, ref):
    from imagebind.models.multimodal_preprocessors import SimpleTokenizer

    texts = ["a dog barking", "waves on a beach at sunset", "x " * 200]  # the last is cut at 77 tokens
    tok = SimpleTokenizer(bpe_path=str(ib.bpe_path()))
    expected = reference(tiny[1], "text", torch.stack([tok(t) for t in texts[:2]]))
    got = space.embed_text(texts[:2])
    assert close(got, expected) < TOL
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-6)
    assert space.embed_items(texts[2:], modality="text")[0].info["windows"] > 1  # long text: windows, pooled


def reference_image_transform():
    # TRANSCRIPTION of imagebind/data.py load_and_transform_vision_data (it is torchvision only).
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(224, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))])


def test_image_matches_reference(space, tiny, tmp_path):
    from PIL import Image

    rs = np.random.RandomState(3)
    paths = []
    for i, size in enumerate([(320, 240), (200, 300), (224, 224)]):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rs.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    pixels = torch.stack([reference_image_transform()(Image.open(p).convert("RGB")) for p in paths])
    assert close(torch.stack([space.backend.preprocess_image(Image.open(p)) for p in paths]), pixels) < 1e-6
    got = omnivec.load_space(tiny[0], overrides={"image": {"reduced_decode": False}}).embed_image(paths)
    assert close(got, reference(tiny[1], "vision", pixels)) < TOL


def reference_clip_spans(duration, clip_duration, clips_per_video):
    # TRANSCRIPTION of pytorchvideo's ConstantClipsPerVideoSampler as imagebind/data.py get_clip_timepoints drives it.
    spans, index = [], 0
    max_start = Fraction(max(duration - clip_duration, 0))
    step = Fraction(max_start, clips_per_video)
    while True:
        start = step * index
        spans.append((start, start + clip_duration))
        index += 1
        if index >= clips_per_video or step * index > max_start:
            return spans


def reference_audio(wave: np.ndarray, fbank) -> torch.Tensor:
    # TRANSCRIPTION of imagebind/data.py load_and_transform_audio_data + waveform2melspec, for one 16 kHz wave.
    w = torch.tensor(wave)[None]
    clips = []
    for start, end in reference_clip_spans(w.shape[1] / 16000, 2, 3):
        c = w[:, int(start * 16000):int(end * 16000)]
        c = c - c.mean()
        mel = fbank(c).T
        p = 204 - mel.shape[1]
        mel = torch.nn.functional.pad(mel, (0, p)) if p > 0 else mel[:, :204]
        clips.append((mel[None] - (-4.268)) / 9.138)
    return torch.stack(clips)[None]  # (1, 3 clips, 1, 128, 204)


def omnivec_fbank(c: torch.Tensor) -> torch.Tensor:
    return ib.kaldi_fbank(c[0], 16000, 128)


def test_audio_clips_match_reference_sampler():
    for duration in (0.5, 2.0, 5.0, 7.3, 61.0):
        assert [(float(s), float(e)) for s, e in ib.clip_spans(duration, 2, 3)] == \
               [(float(s), float(e)) for s, e in reference_clip_spans(duration, 2, 3)]


def test_kaldi_fbank_matches_torchaudio():
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    rs = np.random.RandomState(0)
    for n in (400, 5000, 32000):
        w = torch.tensor(rs.randn(n).astype(np.float32))
        expected = kaldi.fbank(w[None], htk_compat=True, sample_frequency=16000, use_energy=False,
                               window_type="hanning", num_mel_bins=128, dither=0.0, frame_length=25, frame_shift=10)
        assert close(ib.kaldi_fbank(w, 16000, 128), expected) < 1e-4


def test_kaldi_fbank_puts_a_tone_in_its_mel_bin():
    """Independent of any implementation: a pure tone's energy peaks in the mel filter centred nearest to it."""
    for freq in (300.0, 1000.0, 4000.0):
        t = np.arange(32000) / 16000
        fb = ib.kaldi_fbank(torch.tensor(np.sin(2 * np.pi * freq * t).astype(np.float32)), 16000, 128)
        assert fb.shape == (198, 128)  # 1 + (32000 - 400) // 160 frames of 25 ms every 10 ms
        mel = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
        lo, hi = mel(20), mel(8000)
        centres = [lo + (k + 1) * (hi - lo) / 129 for k in range(128)]
        nearest = int(np.argmin([abs(c - mel(freq)) for c in centres]))
        assert abs(int(fb.mean(0).argmax()) - nearest) <= 1


def test_audio_matches_reference(space, tiny):
    rs = np.random.RandomState(5)
    t = np.arange(int(16000 * 5.5)) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rs.randn(len(t))).astype(np.float32)
    try:
        from torchaudio.compliance import kaldi

        def fbank(c):
            return kaldi.fbank(c, htk_compat=True, sample_frequency=16000, use_energy=False, window_type="hanning",
                               num_mel_bins=128, dither=0.0, frame_length=25, frame_shift=10)
    except ImportError:  # no torchaudio for this torch: fbank itself is checked above (tone test) and offline
        fbank = omnivec_fbank
    mels = reference_audio(wave, fbank)
    ours = torch.stack([space.backend.preprocess_audio(c) for _, _, c in space.backend.audio_clips(wave)])
    assert close(ours, mels[0]) < 1e-4
    emb = space.embed_items([(wave, 16000)], modality="audio")[0]
    assert emb.info["windows"] == 3
    spans = [t for s in emb.segments for t in (s.start, s.end)]
    assert spans == pytest.approx([0, 2, 7 / 6, 19 / 6, 7 / 3, 13 / 3], abs=1e-6)  # clips start at k * (5.5 - 2) / 3
    assert close(emb.vector[None], reference(tiny[1], "audio", mels)) < TOL  # 5-D input: the model averages clips


def reference_video_clip(frames: list[np.ndarray]) -> torch.Tensor:
    # TRANSCRIPTION of imagebind/data.py load_and_transform_video_data for one clip, centre crop (spatial_idx 1):
    # /255, pytorchvideo ShortSideScale(224) (bilinear), NormalizeVideo(CLIP mean/std), uniform_crop(224, 1).
    x = torch.tensor(np.stack(frames)).permute(3, 0, 1, 2).float() / 255.0  # C, T, H, W
    c, t, h, w = x.shape
    size = (int(math.floor(h / w * 224)), 224) if w < h else (224, int(math.floor(w / h * 224)))
    x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073))[:, None, None, None]
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711))[:, None, None, None]
    x = (x - mean) / std
    y0, x0 = int(math.ceil((x.shape[2] - 224) / 2)), int(math.ceil((x.shape[3] - 224) / 2))
    return x[:, :, y0:y0 + 224, x0:x0 + 224]


def test_video_clips_match_reference(space, tiny, tmp_path):
    ffmpeg = shutil.which("ffmpeg")
    if not ffmpeg:
        pytest.skip("ffmpeg is needed to write the test video")
    from omnivec.media import sample_frames, to_media

    rs = np.random.RandomState(7)
    frames = [np.kron(rs.randint(0, 255, (9, 12, 3)), np.ones((32, 32, 1))).astype(np.uint8) for _ in range(4)]
    raw = b"".join(np.repeat(f[None], 5, 0).tobytes() for f in frames)  # 4 distinct seconds at 5 fps
    path = tmp_path / "v.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                    "384x288", "-r", "5", "-i", "-", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", str(path)],
                   input=raw, check=True)
    decoded = [np.asarray(f.image) for f in sample_frames(to_media(str(path)), 1.0, min_size=224)]
    assert len(decoded) == 4
    clips = torch.stack([reference_video_clip(decoded[:2]), reference_video_clip(decoded[2:])])
    ours = [space.backend.make_clip([space.backend.preprocess_video_frame(_pil(f)) for f in pair])
            for pair in (decoded[:2], decoded[2:])]
    assert close(torch.stack(ours), clips) < 1e-5
    emb = space.embed_items([path], modality="video")[0]
    assert emb.info["frames"] == 2  # two clips of two frames
    assert close(emb.vector[None], reference(tiny[1], "vision", clips[None])) < TOL  # (1, S=2 clips, 3, 2, H, W)


def _pil(a):
    from PIL import Image

    return Image.fromarray(a)


def test_depth_and_thermal_match_reference_model(space, tiny, tmp_path):
    from PIL import Image

    rs = np.random.RandomState(9)
    depth16 = rs.randint(0, 65535, (180, 240)).astype(np.uint16)
    Image.fromarray(depth16).save(tmp_path / "d.png")
    thermal8 = rs.randint(0, 255, (256, 200)).astype(np.uint8)
    Image.fromarray(thermal8).save(tmp_path / "t.png")
    d = space.backend.preprocess_map(depth16.astype(np.float32) / 65535)
    t = space.backend.preprocess_map(thermal8.astype(np.float32) / 255)
    assert d.shape == t.shape == (1, 224, 224)
    assert close(space.embed_depth([tmp_path / "d.png"]), reference(tiny[1], "depth", d[None])) < TOL
    assert close(space.embed_thermal(str(tmp_path / "t.png")), reference(tiny[1], "thermal", t[None])) < TOL
    # The same PNG is an image unless the caller says otherwise.
    assert space.embed_items([tmp_path / "t.png"])[0].modality == "image"
    assert not np.allclose(space.embed_depth([tmp_path / "t.png"]), space.embed_thermal([tmp_path / "t.png"]))


def test_imu_matches_reference_model_from_csv_npy_and_arrays(space, tiny, tmp_path):
    rs = np.random.RandomState(11)
    series = rs.randn(3100, 6).astype(np.float32)
    (tmp_path / "imu.csv").write_text("ax,ay,az,gx,gy,gz\n" + "\n".join(",".join(f"{v:.9g}" for v in r) for r in series))
    np.save(tmp_path / "imu.npy", series.T)
    windows = torch.zeros(2, 6, 2000)
    windows[0] = torch.tensor(series[:2000].T)
    windows[1, :, :1100] = torch.tensor(series[2000:].T)
    ref_vecs = reference(tiny[1], "imu", windows)
    expected = ref_vecs[0] * 2000 + ref_vecs[1] * 1100  # windows pooled by their sample counts
    expected /= np.linalg.norm(expected)
    got = space.embed_imu([series, tmp_path / "imu.csv", str(tmp_path / "imu.npy")])
    assert close(got, np.stack([expected] * 3)) < TOL
    one = space.embed_imu(series[:500])  # shorter than a window: zero-padded
    pad = torch.zeros(1, 6, 2000)
    pad[0, :, :500] = torch.tensor(series[:500].T)
    assert close(one, reference(tiny[1], "imu", pad)) < TOL


def test_bad_sensor_inputs_fail_per_item(space, tmp_path):
    (tmp_path / "five.csv").write_text("1,2,3,4,5\n6,7,8,9,10\n")
    res = space.embed_items([tmp_path / "five.csv", np.zeros((10, 6), np.float32)], modality="imu", on_error="return")
    assert isinstance(res[0], MediaError) and "6 channels" in res[0].cause and str(tmp_path) in res[0].item
    assert res[1].modality == "imu"
    with pytest.raises(MediaError, match="must be an image file"):
        space.embed_depth([tmp_path / "five.csv"])


def test_other_spaces_refuse_sensor_modalities(tiny_clip):
    with pytest.raises(ModalityError, match="imagebind-huge"):
        tiny_clip.embed_depth([np.zeros((8, 8), np.float32)])
