"""Parity: for the same weights and inputs, omnivec's vectors equal the reference library's own pipeline
(its processor or transform and its forward pass) within 1e-5 per component after normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

import omnivec

TOL = 1e-5
TEXTS = ["a red circle", "a small blue square on yellow", "the sound of a dog barking", "x"]


def _unit(t: torch.Tensor) -> np.ndarray:
    t = t if isinstance(t, torch.Tensor) else t.pooler_output
    return torch.nn.functional.normalize(t.float(), dim=-1).numpy()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list:
    """PNGs and a JPEG too small for reduced decoding: every pixel reaches both pipelines the same way."""
    d = tmp_path_factory.mktemp("parity-images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(40, 32), (57, 90), (120, 64)]):
        arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        arr[h // 4: h // 2, w // 4: w // 2] = (200, 30, 30)
        p = d / f"img{i}.png"
        Image.fromarray(arr).save(p)
        paths.append(p)
    jpg = d / "small.jpg"
    Image.fromarray((rng.random((50, 60, 3)) * 255).astype(np.uint8)).save(jpg, quality=90)
    return paths + [jpg]


def _ref_images(paths) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in paths]


def test_transformers_clip_parity(tiny_clip_dir, images):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(tiny_clip_dir).eval()
    proc = AutoProcessor.from_pretrained(tiny_clip_dir)
    with torch.inference_mode():
        ref_t = _unit(model.get_text_features(**proc(text=TEXTS, padding=True, return_tensors="pt")))
        ref_i = _unit(model.get_image_features(**proc(images=_ref_images(images), return_tensors="pt")))
    space = omnivec.load_space(str(tiny_clip_dir))
    np.testing.assert_allclose(space.embed_text(TEXTS), ref_t, atol=TOL, rtol=0)
    np.testing.assert_allclose(space.embed_image([str(p) for p in images]), ref_i, atol=TOL, rtol=0)
    # Mixed input, modality detected per item, gives the same vectors.
    mixed = space.embed([str(images[0]), TEXTS[0]])
    np.testing.assert_allclose(mixed, np.stack([ref_i[0], ref_t[0]]), atol=TOL, rtol=0)


def test_transformers_siglip_parity(tiny_siglip_dir, images):
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(tiny_siglip_dir).eval()
    proc = AutoProcessor.from_pretrained(tiny_siglip_dir)
    with torch.inference_mode():
        tok = proc(text=TEXTS, padding="max_length", max_length=16, return_tensors="pt")
        assert "attention_mask" not in tok  # SigLIP's text tower runs unmasked, as it was trained
        ref_t = _unit(model.get_text_features(**tok))
        ref_i = _unit(model.get_image_features(**proc(images=_ref_images(images), return_tensors="pt")))
    space = omnivec.load_space(str(tiny_siglip_dir))
    np.testing.assert_allclose(space.embed_text(TEXTS), ref_t, atol=TOL, rtol=0)
    np.testing.assert_allclose(space.embed_image(images), ref_i, atol=TOL, rtol=0)


def test_open_clip_parity(tiny_openclip_dir, images):
    import open_clip

    name = f"local-dir:{tiny_openclip_dir}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    tokenizer = open_clip.get_tokenizer(name)
    model.eval()
    with torch.inference_mode():
        ref_t = _unit(model.encode_text(tokenizer(TEXTS)))
        ref_i = _unit(model.encode_image(torch.stack([preprocess(im) for im in _ref_images(images)])))
    space = omnivec.load_space(str(tiny_openclip_dir))
    assert space.backend.__class__.__name__ == "OpenClipBackend"
    np.testing.assert_allclose(space.embed_text(TEXTS), ref_t, atol=TOL, rtol=0)
    np.testing.assert_allclose(space.embed_image(images), ref_i, atol=TOL, rtol=0)


def test_clap_parity_text_and_audio(tiny_clap_dir, tmp_path):
    from transformers import AutoModel, AutoProcessor

    sr = 48000
    t = np.arange(int(sr * 3.5)) / sr
    waves = [0.3 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sign(np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * 900 * t)]
    paths = []
    for i, w in enumerate(waves):
        paths.append(tmp_path / f"clip{i}.wav")
        sf.write(paths[-1], w.astype(np.float32), sr, subtype="FLOAT")
    model = AutoModel.from_pretrained(tiny_clap_dir).eval()
    proc = AutoProcessor.from_pretrained(tiny_clap_dir)
    with torch.inference_mode():
        ref_t = _unit(model.get_text_features(**proc.tokenizer(TEXTS, padding=True, return_tensors="pt")))
        feats = proc.feature_extractor([sf.read(p, dtype="float32")[0] for p in paths], sampling_rate=sr,
                                       return_tensors="pt")
        ref_a = _unit(model.get_audio_features(**feats))
    space = omnivec.load_space(str(tiny_clap_dir))
    # parity on texts that tokenise alike would prove nothing: the tiny tokenizer must tell these texts apart
    assert len({tuple(x) for x in proc.tokenizer(TEXTS)["input_ids"]}) == len(TEXTS)
    np.testing.assert_allclose(space.embed_text(TEXTS), ref_t, atol=TOL, rtol=0)
    np.testing.assert_allclose(space.embed_audio(paths), ref_a, atol=TOL, rtol=0)


def test_reduced_jpeg_decode_is_close_and_optional(tiny_clip_dir, tmp_path):
    """Large JPEGs are decoded at reduced scale (fast) unless switched off, which restores exact parity."""
    from transformers import AutoModel, AutoProcessor

    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:600, 0:800]
    arr = np.stack([xx * 255 // 800, yy * 255 // 600, (xx + yy) * 255 // 1400], -1).astype(np.uint8)
    arr[200:400, 300:500] = (220, 30, 30)
    arr = np.clip(arr + rng.normal(0, 8, arr.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(arr).save(path, quality=90)
    model = AutoModel.from_pretrained(tiny_clip_dir).eval()
    proc = AutoProcessor.from_pretrained(tiny_clip_dir)
    with torch.inference_mode():
        ref = _unit(model.get_image_features(**proc(images=_ref_images([path]), return_tensors="pt")))[0]
    fast = omnivec.load_space(str(tiny_clip_dir)).embed_image([path])[0]
    exact = omnivec.load_space(str(tiny_clip_dir), overrides={"image": {"reduced_decode": False}}).embed_image([path])[0]
    np.testing.assert_allclose(exact, ref, atol=TOL, rtol=0)
    assert float(fast @ ref) > 0.99
