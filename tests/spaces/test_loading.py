"""Loading spaces: registry names, hub ids, local folders, the hub cache layout, and fast clear offline failures."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import omnivec
from omnivec.spaces import list_spaces

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "omnivec", *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def test_registry_has_the_promised_spaces():
    spaces = {c.name: c for c in list_spaces()}
    assert {"clip-vit-b-32", "clip-vit-l-14", "siglip2-base", "openclip-vit-b-32-laion2b", "clap-htsat"} <= set(spaces)
    assert spaces["clap-htsat"].hub_id == "laion/clap-htsat-unfused"
    assert set(spaces["clap-htsat"].modalities) == {"text", "audio"}
    assert "audio" not in spaces["clip-vit-b-32"].modalities
    for c in spaces.values():
        assert c.dim and c.licence != "unknown" and c.hub_id


def test_spaces_cli_json_lists_modalities_dims_licence():
    r = run_cli("spaces", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["clip-vit-b-32"]["dim"] == 512 and rows["clip-vit-b-32"]["licence"] == "MIT"
    assert rows["clap-htsat"]["modalities"] == ["text", "audio"]


def _hub_cache(root: Path, repo: str, model_dir: Path) -> Path:
    """The Hugging Face cache layout: models--org--name/{refs/main, snapshots/<commit>/...}."""
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / COMMIT
    shutil.copytree(model_dir, snap)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    return root


def test_registry_name_loads_from_the_hub_cache_offline(tiny_clip_dir, tmp_path):
    cache = _hub_cache(tmp_path / "hub", "openai/clip-vit-base-patch32", tiny_clip_dir)
    r = run_cli("embed", "--text", "a red circle", "--space", "clip-vit-b-32", "--json",
                env={"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["space"]["name"] == "clip-vit-b-32"
    assert out["space"]["model"] == "openai/clip-vit-base-patch32"
    assert out["space"]["version"].startswith(COMMIT[:12])  # the snapshot's commit identifies the weights
    assert len(out["items"][0]["vector"]) == 32


def test_model_dir_env_and_model_path_and_hub_id(tiny_clip_dir, tmp_path, monkeypatch):
    ref = omnivec.load_space(str(tiny_clip_dir)).embed_text(["a red circle"])
    shutil.copytree(tiny_clip_dir, tmp_path / "models" / "clip-vit-b-32")
    shutil.copytree(tiny_clip_dir, tmp_path / "models" / "someorg" / "tiny-clip")
    monkeypatch.setenv("OMNIVEC_MODEL_DIR", str(tmp_path / "models"))
    by_name = omnivec.load_space("clip-vit-b-32")
    assert by_name.name == "clip-vit-b-32" and by_name.model == "openai/clip-vit-base-patch32"
    by_hub_id = omnivec.load_space("someorg/tiny-clip")  # no registry entry needed
    monkeypatch.delenv("OMNIVEC_MODEL_DIR")
    by_path = omnivec.load_space("clip-vit-l-14", model_path=tiny_clip_dir)
    for sp in (by_name, by_hub_id, by_path):
        np.testing.assert_array_equal(sp.embed_text(["a red circle"]), ref)


def test_every_vector_names_its_space_model_and_version(tiny_clip_dir, tmp_path):
    sp = omnivec.load_space(str(tiny_clip_dir))
    rec = sp.embed_items(["a red circle"])[0]
    assert (rec.space, rec.model, rec.version) == (sp.name, sp.model, sp.version)
    # Other weights -> another version; other options that move vectors -> another version.
    other = tmp_path / "other"
    shutil.copytree(tiny_clip_dir, other)
    from safetensors.torch import load_file, save_file

    w = load_file(other / "model.safetensors")
    w["logit_scale"] = w["logit_scale"] + 1
    save_file(w, other / "model.safetensors", metadata={"format": "pt"})
    assert omnivec.load_space(str(other)).version != sp.version
    assert omnivec.load_space(str(tiny_clip_dir), overrides={"video": {"fps": 2}}).version != sp.version


def test_offline_missing_model_fails_fast_and_says_what_to_do(tmp_path):
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1", "OMNIVEC_MODEL_DIR": str(tmp_path / "m")}
    t0 = time.monotonic()
    r = run_cli("embed", "--text", "hi", "--space", "clip-vit-b-32", env=env)
    assert r.returncode == 3
    assert time.monotonic() - t0 < 30
    msg = r.stderr
    for needle in ("clip-vit-b-32", "openai/clip-vit-base-patch32", "Looked in", "--model-path", "OMNIVEC_MODEL_DIR",
                   str(tmp_path / "m")):
        assert needle in msg, (needle, msg)


def test_unreachable_hub_fails_within_seconds(tmp_path):
    """Online mode, but the hub does not answer: a quick probe, not minutes of retries."""
    env = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    t0 = time.monotonic()
    r = run_cli("embed", "--text", "hi", "--space", "siglip2-base", env=env)
    elapsed = time.monotonic() - t0
    assert r.returncode == 3, r.stderr
    assert "unreachable" in r.stderr and "google/siglip2-base-patch16-224" in r.stderr
    assert elapsed < 30


def test_unknown_space_and_bad_folder_are_config_errors(tmp_path):
    with pytest.raises(omnivec.ConfigError, match="unknown space"):
        omnivec.load_space("no such space")
    (tmp_path / "junk").mkdir()
    with pytest.raises(omnivec.ConfigError, match="not a model folder"):
        omnivec.load_space(str(tmp_path / "junk"))
    with pytest.raises(omnivec.ModelNotFoundError, match="does not exist"):
        omnivec.load_space("clip-vit-b-32", model_path=tmp_path / "missing")


def test_open_clip_folder_without_weights_is_refused(tiny_openclip_dir, tmp_path):
    broken = tmp_path / "oc"
    broken.mkdir()
    shutil.copy(tiny_openclip_dir / "open_clip_config.json", broken)
    with pytest.raises(omnivec.ModelNotFoundError, match="no weights"):
        omnivec.load_space(str(broken))  # open_clip alone would warn and run on random weights


def test_modality_not_covered_is_an_error(tiny_clip, tiny_clap):
    with pytest.raises(omnivec.ModalityError, match="does not cover audio"):
        tiny_clip.embed_audio([np.zeros(48000, np.float32)])
    with pytest.raises(omnivec.ModalityError, match="does not cover image"):
        tiny_clap.embed_image([np.zeros((8, 8, 3), np.uint8)])
    with pytest.raises(omnivec.ModalityError, match="does not cover audio"):
        omnivec.load_space(str(tiny_clip.backend.model.name_or_path), audio_space=tiny_clip)


def test_device_defaults_to_the_gpu_torch_sees_and_refuses_missing_ones(tiny_clip_dir, monkeypatch):
    import torch

    monkeypatch.delenv("OMNIVEC_DEVICE", raising=False)
    sp = omnivec.load_space(str(tiny_clip_dir))
    assert sp.backend.device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert omnivec.load_space(str(tiny_clip_dir), device="cpu").backend.device == "cpu"
    with pytest.raises(omnivec.ConfigError, match="cuda:7"):  # never a silent move to the CPU
        omnivec.load_space(str(tiny_clip_dir), device="cuda:7")
    monkeypatch.setenv("OMNIVEC_DEVICE", "gpu0")
    with pytest.raises(omnivec.ConfigError, match=r"'gpu0' \(from \$OMNIVEC_DEVICE\) is not a torch device"):
        omnivec.load_space(str(tiny_clip_dir))
    monkeypatch.setenv("OMNIVEC_DEVICE", "cpu")
    assert omnivec.load_space(str(tiny_clip_dir)).backend.device == "cpu"
