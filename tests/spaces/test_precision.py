"""Reduced precision: bf16 runs the forward pass under autocast, is its own space version, and keeps what the
trained model retrieves; fp16 asks for a GPU and says so."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import omnivec
from omnivec.train.shapes import evaluation_scenes

BF16 = {"precision": "bf16"}


def test_bf16_vectors_are_close_to_fp32_and_versioned_apart(tiny_clip_dir, tmp_path):
    from PIL import Image

    fp32 = omnivec.load_space(str(tiny_clip_dir), device="cpu")
    bf16 = omnivec.load_space(str(tiny_clip_dir), device="cpu", overrides=BF16)
    assert bf16.version == fp32.version + ".bf16" and bf16.config.precision == "bf16"
    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.png"
        Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(str(p))
    texts = ["a red circle", "a small blue square on yellow", "x"]
    for items, modality in ((texts, "text"), (paths, "image")):
        a, b = fp32.embed(items, modality=modality), bf16.embed(items, modality=modality)
        assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        cos = np.sum(a * b, axis=1)
        assert cos.min() > 0.99 and not np.array_equal(a, b), (modality, cos)  # close, and really bf16
        assert np.array_equal(bf16.embed(items, modality=modality), b)  # still deterministic


def test_bf16_keeps_what_the_trained_model_retrieves(shapes_clip_dir, tmp_path):
    scenes = evaluation_scenes(seed=7)
    paths = []
    for i, s in enumerate(scenes):
        p = tmp_path / f"{i}.png"
        s.render(64).save(p)
        paths.append(str(p))
    captions = [s.caption("full") for s in scenes]
    ranks = {}
    for name, overrides in (("fp32", None), ("bf16", BF16)):
        sp = omnivec.load_space(str(shapes_clip_dir), device="cpu", overrides=overrides)
        ranks[name] = np.argmax(sp.embed_text(captions) @ sp.embed_image(paths).T, axis=1)
    assert np.mean(ranks["bf16"] == ranks["fp32"]) >= 0.95
    assert np.mean(ranks["bf16"] == np.arange(len(scenes))) >= 0.9


def test_unknown_precision_and_fp16_on_cpu_are_config_errors(tiny_clip_dir):
    with pytest.raises(omnivec.ConfigError, match="precision must be one of"):
        omnivec.load_space(str(tiny_clip_dir), overrides={"precision": "int4"})
    if not torch.cuda.is_available():
        with pytest.raises(omnivec.ConfigError, match="fp16 needs a GPU"):
            omnivec.load_space(str(tiny_clip_dir), device="cpu", overrides={"precision": "fp16"})


def test_a_bf16_collection_reopens_in_bf16(tiny_clip_dir, tmp_path):
    sp = omnivec.load_space(str(tiny_clip_dir), device="cpu", overrides=BF16)
    col = omnivec.open_collection(tmp_path / "col", space=sp, create=True)
    col.add_vectors(sp.embed_text(["a red circle", "a blue square"]), ids=["a" * 64, "b" * 64], modality="text")
    again = omnivec.open_collection(tmp_path / "col")
    assert again.pinned["precision"] == "bf16" and again.space.version == sp.version
    assert [h.id[0] for h in again.search("a red circle", k=2)] == ["a", "b"]  # its own text first


def test_cli_embed_and_index_take_a_precision(tiny_clip_dir, tmp_path, monkeypatch, capsys):
    import json
    import sys
    from pathlib import Path

    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from cli_run import main

    code, out, _ = main("embed", "--text", "a red circle", "--space", tiny_clip_dir, "--precision", "bf16", "--json",
                        home=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code in (0, None) and json.loads(out)["space"]["precision"] == "bf16"
    folder = tmp_path / "pics"
    folder.mkdir()
    for i, colour in enumerate(("red", "blue")):
        Image.new("RGB", (40, 40), colour).save(folder / f"{i}.png")
    code, out, _ = main("index", folder, "--collection", tmp_path / "col", "--space", tiny_clip_dir,
                        "--precision", "bf16", "--json", home=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code in (0, None), out
    col = omnivec.open_collection(tmp_path / "col")
    assert len(col) == 2 and col.space.version.endswith(".bf16")
    code, _, err = main("index", folder, "--collection", tmp_path / "col", "--space", tiny_clip_dir, "--precision",
                        "fp32", home=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert code != 0 and "pinned to space" in err  # the collection stays bf16
