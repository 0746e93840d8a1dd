"""On a GPU: a space gives the same vectors on CUDA as on the CPU, for every backend and modality, and the same
input gives the same vector bit for bit on the GPU. Skipped where torch sees no CUDA device (CI has none; run it
on a GPU host: `pytest tests/spaces/test_devices.py`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import omnivec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
TOL = 1e-4  # per component of unit vectors: CUDA kernels sum in another order than the CPU's
TEXTS = ["a red circle", "a small blue square on yellow", "the sound of a dog barking"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    import soundfile as sf

    d = tmp_path_factory.mktemp("device-media")
    rng = np.random.default_rng(0)
    images = []
    for i, (w, h) in enumerate([(40, 32), (300, 200), (640, 480)]):
        p = d / f"img{i}.png"
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(p)
        images.append(str(p))
    t = np.arange(48000 * 3) / 48000
    wav = d / "tone.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t))).astype(np.float32), 48000)
    return {"image": images, "audio": [str(wav)]}


def _both(folder) -> tuple:
    return omnivec.load_space(str(folder), device="cpu"), omnivec.load_space(str(folder), device="cuda")


@pytest.mark.parametrize("model", ["tiny_clip_dir", "tiny_siglip_dir", "tiny_openclip_dir", "tiny_clap_dir"])
def test_cuda_vectors_match_cpu_and_repeat_exactly(model, media, request):
    cpu, gpu = _both(request.getfixturevalue(model))
    assert gpu.backend.device == "cuda" and gpu.version == cpu.version  # same weights, same version
    other = "audio" if "audio" in gpu.modalities else "image"
    for modality, items in (("text", TEXTS), (other, media[other])):
        on_cpu, on_gpu = cpu.embed(items, modality=modality), gpu.embed(items, modality=modality)
        np.testing.assert_allclose(on_gpu, on_cpu, atol=TOL, rtol=0, err_msg=f"{model} {modality}")
        assert np.array_equal(gpu.embed(items, modality=modality), on_gpu), f"{model} {modality} not repeatable"


def test_default_device_is_the_gpu_and_decoding_gets_the_cores(tiny_clip_dir, monkeypatch):
    monkeypatch.delenv("OMNIVEC_DEVICE", raising=False)
    sp = omnivec.load_space(str(tiny_clip_dir))
    assert sp.backend.device == "cuda"
    assert next(sp.backend.model.parameters()).is_cuda
    assert sp.workers >= omnivec.load_space(str(tiny_clip_dir), device="cpu").workers
